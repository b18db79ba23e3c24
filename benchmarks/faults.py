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


def saving_now(workdir: pathlib.Path, since: float) -> bool:
    """Whether an asynchronous save is being written: an Orbax temporary step folder created
    after ``since`` (a killed save's leftover stays until the next run opens the folder)."""
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return False
    for path in directory.iterdir():
        try:
            if "tmp" in path.name and path.stat().st_mtime >= since:
                return True
        except FileNotFoundError:  # committed (renamed) while we looked: it was saving
            return True
    return False


def logged_steps(workdir: pathlib.Path) -> int:
    """Rows in ``metrics.jsonl`` (it grows by one row per trained step at log_every_steps=1)."""
    path = workdir / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


def wait_for_kill(
    proc: subprocess.Popen, workdir: pathlib.Path, rng: random.Random, startup: float | None
) -> tuple[str | None, float | None]:
    """Waits for this cycle's kill moment.

    With a known start-up time (start to first trained step, measured on an earlier cycle)
    half the cycles are killed at a random moment of the start-up (imports, data writing,
    restore, compilation); the others, and every cycle while the start-up time is unknown, a
    random number of trained steps after training resumed plus up to half a second, so kills
    land between and during saves whatever the machine's load.

    Returns:
        ``(description of the kill moment or None if the run ended first, measured start-up
        seconds or None)``.
    """
    began, rows = time.monotonic(), logged_steps(workdir)
    if startup is not None and rng.random() < 0.5:
        delay = rng.uniform(0.05, 1.0) * startup
        try:
            proc.wait(timeout=delay)
            return None, None
        except subprocess.TimeoutExpired:
            return f"{delay:.1f} s after start (start-up)", None
    steps = rng.randint(1, 8)
    measured = None
    while logged_steps(workdir) < rows + steps:
        if measured is None and logged_steps(workdir) > rows:
            measured = time.monotonic() - began
        if proc.poll() is not None:
            return None, measured
        time.sleep(0.02)
    measured = measured if measured is not None else time.monotonic() - began
    extra = rng.uniform(0.0, 0.5)
    try:
        proc.wait(timeout=extra)
        return None, measured
    except subprocess.TimeoutExpired:
        return f"{steps} step(s) + {extra:.2f} s into training", measured


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
    from benchmarks.common import machine_line

    print(machine_line(), flush=True)
    rng = random.Random(args.seed)
    base = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="faults_"))
    base.mkdir(parents=True, exist_ok=True)
    reference, soaked, logs = base / "reference", base / "soaked", base / "logs"
    logs.mkdir(exist_ok=True)

    if not (reference / "metrics.json").is_file():
        run_to_end(reference, args, logs / "reference.log")
    # A second uninterrupted run: the baseline must itself be reproducible.
    if not (base / "reference_again" / "metrics.json").is_file():
        seconds = run_to_end(base / "reference_again", args, logs / "reference_again.log")
        print(f"uninterrupted run: {args.total_steps} steps in {seconds:.0f} s ({base})")
    baseline = compare(reference, base / "reference_again", args.total_steps)
    for line in baseline:
        print(f"UNINTERRUPTED RUNS DIFFER {line}")
    survived, killed, during_save, finished_early, startup = 0, 0, 0, 0, None
    for cycle in range(args.cycles):
        began = time.time()
        proc = start(soaked, args, logs / f"cycle{cycle:03d}.log")
        when, measured = wait_for_kill(proc, soaked, rng, startup)
        startup = measured if measured is not None else startup
        if when is not None:
            in_save = saving_now(soaked, began)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
            during_save += in_save
            steps = [int(p.name) for p in soaked.glob("checkpoints/*") if p.name.isdigit()]
            print(
                f"cycle {cycle + 1}: killed {when}{' during a save' if in_save else ''}; "
                f"newest checkpoint step {max(steps, default=0)}",
                flush=True,
            )
        elif proc.returncode != 0:
            print(f"cycle {cycle + 1}: FAILED with exit status {proc.returncode}")
            break
        else:
            finished_early += 1
            print(f"cycle {cycle + 1}: finished before its kill", flush=True)
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
