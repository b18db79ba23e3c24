"""anomalib's DRAEM+SSPCAB training step vs ours, each side in its own process, alternated.

    python -m benchmarks.compare_anomalib                      # paper size: 256x256, batch 8
    python -m benchmarks.compare_anomalib --size 128 --repeats 2
    python -m benchmarks.compare_anomalib --anomalib-python /path/to/other/venv/bin/python

anomalib's side is ``anomalib.models.Draem(enable_sspcab=True)`` stepped as Lightning's automatic
optimisation does: ``zero_grad``, its ``training_step`` (anomaly synthesis with its
``PerlinAnomalyGenerator``, image by image on the CPU; both networks, widths 128/64, SSPCAB in the
reconstructive bottleneck; L2 + 2 x SSIM + focal loss; the SSPCAB loss from its forward hooks,
lambda 0.1), ``loss.backward()`` and ``step()`` of the Adam from its ``configure_optimizers``. It
runs outside a ``Trainer`` (its ``self.log`` then only warns). Ours is the library's train step
(``ParallelRunner('single').compile_train_step`` of the DRAEM task's ``train_step``: synthesis on
the device, both networks, L2 + SSIM + focal + SSPCAB loss, Adam) with anomalib's choices where
ours has a switch: placement ``bottleneck``, focal loss on logits, opacity range (0.1, 1.0).

Anomaly sources are Perlin-noise textures on both sides (anomalib: an empty ``dtd_dir``, so
nothing is downloaded; ours: ``sources=None``). Each repeat starts a fresh process for our side,
then one for anomalib's; each runs ``--warmup`` steps (ours: compilation included), then times
``--steps`` steps. Figures: median seconds per step over every timed step, the ratio, and each
side's peak RSS (``ru_maxrss``). torch uses ``--threads`` threads (default: the usable cores); XLA
uses every usable core. anomalib needs torch (the ``torch`` extra first, so pip keeps the CPU
build) and then the ``anomalib`` extra; ``--anomalib-python`` runs its side with another
interpreter (its own virtual environment).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANOMALIB_MODULE = "anomalib"
INSTALL_HINT = (
    "benchmarks.compare_anomalib needs anomalib: pip install -e '.[torch]' (CPU build of torch "
    "first), then pip install -e '.[anomalib]', or pass --anomalib-python PATH"
)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (multiple of 32)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="fresh process pairs, alternated")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per process")
    parser.add_argument("--threads", type=int, default=_usable_cores(), help="torch threads")
    parser.add_argument(
        "--anomalib-python", default=sys.executable, help="interpreter that has anomalib"
    )
    parser.add_argument("--no-xla-flags", action="store_true", help="skip the default CPU flags")
    parser.add_argument("--child", choices=("ours", "anomalib"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size < 32 or args.size % 32:
        parser.error(f"--size {args.size}: use a multiple of 32 (DRAEM pools five times)")
    for name in ("batch", "repeats", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: use a positive integer")
    return args


def require_anomalib(python: str) -> None:
    """Stop with :data:`INSTALL_HINT` unless ``python`` can import anomalib."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"
    try:
        probed = subprocess.run([python, "-c", probe, ANOMALIB_MODULE], capture_output=True)
        found = probed.returncode == 0
    except OSError:
        found = False
    if not found:
        raise SystemExit(INSTALL_HINT)


def _images(batch: int, size: int):
    import numpy as np

    return np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)


def _import_torchvision_without_ops(torch) -> None:
    """Import torchvision even when its C++ detection ops cannot load.

    PyPI's Linux torchvision wheels are CUDA builds: next to a CPU-only torch their ``_C``
    extension (nms, roi_align: detection ops that DRAEM never calls) does not load, and
    ``import torchvision`` then fails registering fake kernels for the missing ops. Those
    registrations are skipped; with a matching torchvision nothing changes.
    """
    original = torch.library.register_fake

    def tolerant(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::"):
            if not hasattr(torch.ops.torchvision, op.split("::", 1)[1]):
                return lambda fn: fn
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake = original


def anomalib_side(args):
    """anomalib's ``Draem(enable_sspcab=True)``: returns (step function, parameter count)."""
    import tempfile
    import warnings

    import torch

    _import_torchvision_without_ops(torch)
    from anomalib.data import ImageBatch
    from anomalib.models import Draem

    warnings.filterwarnings("ignore", message=".*self.log.*")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    no_textures = tempfile.mkdtemp(prefix="dtd_empty_")  # exists, holds no image: Perlin sources
    module = Draem(
        dtd_dir=no_textures,
        enable_sspcab=True,
        pre_processor=False,
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    module.train()
    optimizers, _ = module.configure_optimizers()
    optimizer = optimizers[0]
    images = torch.from_numpy(_images(args.batch, args.size).transpose(0, 3, 1, 2).copy())
    batch = ImageBatch(image=images)

    def step():
        optimizer.zero_grad()
        loss = module.training_step(batch, 0)["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in module.model.parameters())


def our_side(args):
    """Our DRAEM train step at placement ``bottleneck``: returns (step function, parameters)."""
    import jax
    import numpy as np

    from configs import default
    from sspcab_jax.training.loop import key_streams
    from sspcab_jax.training.parallel import ParallelRunner
    from sspcab_jax.training.state import create_model, create_train_state
    from sspcab_jax.training.tasks import get_task

    config = default.get_config()
    config.data.image_size, config.batch_size = args.size, args.batch
    config.draem.recon_width, config.draem.disc_width = 128, 64
    config.draem.sspcab_placement = "bottleneck"
    config.focal = "logits"
    config.synthesis.opacity_range = (0.1, 1.0)
    runner = ParallelRunner("single")
    model = create_model(config, bn_axis_name=runner.axis_name)
    init_key, synth_key = key_streams(0)
    state = runner.put_replicated(create_train_state(config, model, init_key))
    placed = runner.put_batch({"image": _images(args.batch, args.size)})
    key = runner.put_key(synth_key)
    train_step = runner.compile_train_step(get_task(config).train_step(model, runner.axis_name))
    params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
    holder = {"state": state}

    def step():
        holder["state"], metrics = train_step(holder["state"], placed, key, None)
        return float(jax.block_until_ready(metrics["total"]))

    return step, params


def child(args):
    """One side: warm-up, timed steps; prints one JSON line."""
    start = time.perf_counter()
    step, params = (our_side if args.child == "ours" else anomalib_side)(args)
    setup_s = time.perf_counter() - start
    warmup = []
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        step()
        warmup.append(time.perf_counter() - t0)
    times, loss = [], float("nan")
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    result = {
        "side": args.child,
        "step_s": [round(t, 3) for t in times],
        "warmup_s": [round(t, 2) for t in warmup],
        "setup_s": round(setup_s, 1),
        "params": params,
        "loss": round(loss, 4),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result), flush=True)


def _run_child(side: str, args) -> dict:
    python = args.anomalib_python if side == "anomalib" else sys.executable
    cmd = [python, "-m", "benchmarks.compare_anomalib", "--child", side]
    cmd += ["--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    cmd += ["--no-xla-flags"] if args.no_xla_flags else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{side} side failed (exit {proc.returncode}): {tail[0]}")
    return json.loads(lines[-1])


def summary(runs: dict) -> str:
    """Medians over every timed step, the ratio, per-repeat ratios and the peak RSS of each side.

    Args:
      runs: ``{'ours': [child result, ...], 'anomalib': [...]}``, one result per repeat, in order.
    """
    medians = {s: statistics.median(t for r in rs for t in r["step_s"]) for s, rs in runs.items()}
    rss = {s: max(r["peak_rss_gib"] for r in rs) for s, rs in runs.items()}
    # Each repeat's pair ran back to back: its ratio is the least exposed to load drifting.
    pairs = [
        statistics.median(o["step_s"]) / statistics.median(a["step_s"])
        for o, a in zip(runs["ours"], runs["anomalib"], strict=True)
    ]
    return (
        f"ours {medians['ours']:.2f} s/step, anomalib {medians['anomalib']:.2f} s/step, "
        f"ratio ours/anomalib {medians['ours'] / medians['anomalib']:.2f} (per repeat: "
        f"{', '.join(f'{p:.2f}' for p in pairs)}); peak RSS ours {rss['ours']:.2f} GiB, "
        f"anomalib {rss['anomalib']:.2f} GiB"
    )


def compare(args):
    """Alternate fresh processes of both sides; print medians, the ratio and peak RSS."""
    from benchmarks.common import machine_line

    print(machine_line())
    print(
        f"{args.size}x{args.size}, batch {args.batch}, widths 128/64, SSPCAB bottleneck; "
        f"{args.repeats} repeats x {args.steps} timed steps (+{args.warmup} warm-up); "
        f"torch threads {args.threads}; anomalib python {args.anomalib_python}",
        flush=True,
    )
    runs = {"ours": [], "anomalib": []}
    for repeat in range(args.repeats):
        for side in ("ours", "anomalib"):
            r = _run_child(side, args)
            runs[side].append(r)
            print(
                f"repeat {repeat + 1} {side:8s} step_s {r['step_s']} warm-up {r['warmup_s']} "
                f"peak RSS {r['peak_rss_gib']:.2f} GiB, {r['params'] / 1e6:.1f} M params, "
                f"loss {r['loss']}, load {r['load']:.2f}",
                flush=True,
            )
    print(summary(runs) + f"; load {os.getloadavg()[0]:.2f}")


def main(argv=None):
    args = parse(argv)
    if args.child == "anomalib":
        child(args)
        return
    if not args.child:
        require_anomalib(args.anomalib_python)  # before any work: one line naming the install
    if not args.no_xla_flags:
        from sspcab_jax.xla_flags import apply_default_cpu_flags

        apply_default_cpu_flags()  # inherited by our side's processes
    if args.child == "ours":
        child(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
