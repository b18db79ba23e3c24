"""Kill-and-resume soak test of ``train.main``: SIGKILL at random moments, then compare.

Runs ``python -m train.main --config=configs/test.py`` once without interruption (the
reference), then ``--cycles`` times in a second work directory, each start killed with
SIGKILL after a random delay (before the first save, between saves, during asynchronous
saves, during the final evaluation), and finally once more to completion. The final
checkpoint's arrays, ``metrics.json`` and every row of ``metrics.jsonl`` (timing excluded)
must equal the reference's bit for bit::

    python -m benchmarks.faults --cycles=20

Prints the cycles survived and every difference; exits 1 on any difference. Not part of the
test suite (minutes of wall time); see benchmarks/README.md for a measured figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING_KEYS = ("train/steps_per_second",)


def train_command(workdir: pathlib.Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "train.main",
        "--config=configs/test.py",
        f"--workdir={workdir}",
        f"--config.total_steps={args.total_steps}",
        f"--config.checkpoint_every_steps={args.checkpoint_every}",
        "--config.log_every_steps=1",
    ]


def start(workdir: pathlib.Path, args: argparse.Namespace, log: pathlib.Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.setdefault(
        "JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache/sspcab_jax/jax_cache")
    )
    with log.open("w") as out:
        # A session of its own so the kill reaches any worker process the run started.
        return subprocess.Popen(
            train_command(workdir, args),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def saving_now(workdir: pathlib.Path) -> bool:
    """Whether an asynchronous save is being written (Orbax's temporary step folder)."""
    directory = workdir / "checkpoints"
    return directory.is_dir() and any("tmp" in p.name for p in directory.iterdir())


def run_to_end(workdir: pathlib.Path, args: argparse.Namespace, log: pathlib.Path) -> float:
    began = time.monotonic()
    proc = start(workdir, args, log)
    if proc.wait() != 0:
        sys.exit(f"error: {' '.join(train_command(workdir, args))} failed; see {log}")
    return time.monotonic() - began


def final_state(workdir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
    import jax
    import orbax.checkpoint as ocp

    tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    return {
        jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)
    }


def metric_rows(workdir: pathlib.Path) -> list[dict]:
    rows = []
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if k not in TIMING_KEYS})
    return rows


def compare(reference: pathlib.Path, soaked: pathlib.Path, step: int) -> list[str]:
    """Every difference between the two runs' final outputs, one line each."""
    problems = []
    want, got = final_state(reference, step), final_state(soaked, step)
    if want.keys() != got.keys():
        problems.append(f"state leaves differ: {sorted(want.keys() ^ got.keys())[:5]}")
    for name in sorted(want.keys() & got.keys()):
        a, b = want[name], got[name]
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            changed = int(np.sum(a != b)) if a.shape == b.shape else "shape"
            problems.append(f"state {name}: {changed} value(s) differ")
    for name in ("metrics.json",):
        a, b = (json.loads((d / name).read_text()) for d in (reference, soaked))
        if a != b:
            problems.append(f"{name}: {a} (reference) vs {b} (soaked)")
    expected = {json.dumps(r, sort_keys=True) for r in metric_rows(reference)}
    rows = metric_rows(soaked)
    extra = [r for r in rows if json.dumps(r, sort_keys=True) not in expected]
    problems += [f"metrics.jsonl row not in the reference: {r}" for r in extra[:10]]
    seen = {json.dumps(r, sort_keys=True) for r in rows}
    missing = expected - seen
    problems += [f"metrics.jsonl row missing: {r}" for r in sorted(missing)[:10]]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--total_steps", type=int, default=80)
    parser.add_argument("--checkpoint_every", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default="", help="work folder (default: a new temporary one)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="faults_"))
    base.mkdir(parents=True, exist_ok=True)
    reference, soaked, logs = base / "reference", base / "soaked", base / "logs"
    logs.mkdir(exist_ok=True)

    run_to_end(reference, args, logs / "reference.log")
    # A second uninterrupted run: the baseline must itself be reproducible, and its time
    # (compiled programs cached, dataset written) is what the kill delays are drawn from.
    seconds = run_to_end(base / "reference_again", args, logs / "reference_again.log")
    print(f"uninterrupted run: {args.total_steps} steps in {seconds:.0f} s ({base})", flush=True)
    baseline = compare(reference, base / "reference_again", args.total_steps)
    for line in baseline:
        print(f"UNINTERRUPTED RUNS DIFFER {line}")
    survived, killed, during_save, finished_early = 0, 0, 0, 0
    for cycle in range(args.cycles):
        delay = rng.uniform(0.1, 1.0) * seconds
        proc = start(soaked, args, logs / f"cycle{cycle:03d}.log")
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            in_save = saving_now(soaked)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
            during_save += in_save
            latest = (
                max(
                    (int(p.name) for p in (soaked / "checkpoints").glob("*") if p.name.isdigit()),
                    default=0,
                )
                if (soaked / "checkpoints").is_dir()
                else 0
            )
            print(
                f"cycle {cycle + 1}: killed after {delay:.1f} s"
                f"{' during a save' if in_save else ''}; newest checkpoint step {latest}",
                flush=True,
            )
        else:
            if proc.returncode != 0:
                print(f"cycle {cycle + 1}: FAILED with exit status {proc.returncode}")
                break
            finished_early += 1
            print(f"cycle {cycle + 1}: finished before its kill ({delay:.1f} s)", flush=True)
        survived += 1
    run_to_end(soaked, args, logs / "final.log")
    problems = compare(reference, soaked, args.total_steps)
    duplicates = len(metric_rows(soaked)) - len(metric_rows(reference))
    print(
        f"survived {survived}/{args.cycles} cycles ({killed} killed, {during_save} of them "
        f"during an asynchronous save, {finished_early} finished before the kill); "
        f"metrics.jsonl has {duplicates} more row(s) than the reference"
    )
    for line in problems:
        print(f"DIFFERENCE {line}")
    print(
        "final state, metrics.json and metrics.jsonl rows: "
        + ("IDENTICAL" if not problems else f"{len(problems)} difference(s)")
    )
    sys.exit(1 if problems or baseline or survived < args.cycles else 0)


if __name__ == "__main__":
    main()
