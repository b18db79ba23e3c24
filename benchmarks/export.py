"""Latency of an exported detector artifact vs the in-process ``Detector`` it came from.

    python -m benchmarks.export [--sizes demo,paper] [--repeats 5]

For each size (demo = DRAEM 64x64, widths 16/8; paper = 256x256, widths 128/64; random
weights, a hand-made calibration) the detector is exported with ``export_detector``, loaded
back with ``sspcab_jax.export.load`` and both are timed on uint8 images at the model's size:
per image at batch 1 and at batch 8, medians after one warm-up call each. The two calls
alternate (detector, artifact, detector, ...), so that a change of the machine's load during
the run affects both alike.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time

from benchmarks.detector import SIZES, _cpu_name
from sspcab_jax.xla_flags import apply_default_cpu_flags


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="demo,paper")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


def _alternating_medians(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()``, called in turn after one warm-up each."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, into in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            into.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None):
    args = _parse(argv)
    apply_default_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.common import machine_line
    from sspcab_jax import Calibration, Detector, Draem
    from sspcab_jax.export import export_detector, load

    print(machine_line())
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    calibration = Calibration(
        image_threshold=0.5, pixel_threshold=0.5, image_min=0.0, image_max=1.0,
        pixel_min=0.0, pixel_max=1.0, source="false_alarm_rate", false_alarm_rate=0.01,
    )  # fmt: skip
    for name in args.sizes.split(","):
        size, recon, disc = SIZES[name]
        model = Draem(recon, disc)
        init = jax.jit(functools.partial(model.init, train=False))
        variables = init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
        detector = Detector.from_flax(model, variables, calibration, size, batch_size=8)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{name}.jaxexport")
            export_detector(detector, path)
            artifact = load(path, batch_size=8)
            for batch in (1, 8):
                images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                ours, exported = _alternating_medians(
                    lambda d=detector, x=images: d(x),
                    lambda a=artifact, x=images: a(x),
                    args.repeats,
                )
                print(
                    f"{name} ({size}x{size}, widths {recon}/{disc}), batch {batch}: "
                    f"in-process {1e3 * ours / batch:.1f} ms/image, artifact "
                    f"{1e3 * exported / batch:.1f} ms/image, ratio {exported / ours:.2f}; "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
