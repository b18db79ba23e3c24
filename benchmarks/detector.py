"""Throughput and latency of ``sspcab_jax.Detector`` (end to end: checks, resizing, stitching).

    python -m benchmarks.detector [--sizes demo,paper] [--repeats 3]

For each size: a batch of ``--batch`` uint8 images at the model's input size (images/s), one
image at that size (latency), and one 1024x1024 image cut into tiles of the model's input size
(``--overlap`` pixels shared), as a user inspecting large parts would call it. Demo = DRAEM
64x64, widths 16/8; paper = 256x256, widths 128/64. Parameters are randomly initialised (speed
does not depend on them). Times are medians after one warm-up call (which compiles).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

from sspcab_jax.xla_flags import apply_default_cpu_flags

SIZES = {"demo": (64, 16, 8), "paper": (256, 128, 64)}


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="demo,paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--large", type=int, default=1024, help="side of the tiled image")
    parser.add_argument("--overlap", type=int, default=16, help="tile overlap in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _median_seconds(fn, repeats):
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main(argv=None):
    args = _parse(argv)
    apply_default_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.common import machine_line
    from sspcab_jax import Detector, Draem

    print(machine_line())
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    for name in args.sizes.split(","):
        size, recon, disc = SIZES[name]
        model = Draem(recon, disc)
        init = jax.jit(functools.partial(model.init, train=False))
        variables = init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
        untiled = Detector.from_flax(model, variables, None, size, batch_size=args.batch)
        tiled = Detector.from_flax(
            model, variables, None, size, batch_size=args.batch,
            tile_size=size, tile_overlap=args.overlap,
        )  # fmt: skip
        batch = rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
        large = rng.integers(0, 256, (args.large, args.large, 3), dtype=np.uint8)
        compile_b, per_batch = _median_seconds(lambda d=untiled, b=batch: d(b), args.repeats)
        compile_1, single = _median_seconds(lambda d=untiled, b=batch: d(b[0]), args.repeats)
        compile_t, per_large = _median_seconds(lambda d=tiled, x=large: d(x), args.repeats)
        stride = size - args.overlap
        per_side = -(-(args.large - size) // stride) + 1
        print(
            f"{name} ({size}x{size}, widths {recon}/{disc}): "
            f"batch {args.batch}: {args.batch / per_batch:.1f} images/s "
            f"({1e3 * per_batch / args.batch:.1f} ms/image); "
            f"one image: {1e3 * single:.1f} ms; "
            f"tiled {args.large}x{args.large} ({per_side}x{per_side} tiles, overlap "
            f"{args.overlap}): {1e3 * per_large:.0f} ms/image; "
            f"first calls (compile) {compile_b:.1f} / {compile_1:.1f} / {compile_t:.1f} s; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
