"""Timing helpers shared by the benchmark scripts."""

import json
import os
import platform
import statistics
import time

import jax


def block_until_ready(tree):
    return jax.tree_util.tree_map(
        lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree
    )


def time_fn(fn, *args, repeats=10, warmup=2):
    """Returns (compile+first-run seconds, median seconds per call) of a jitted function."""
    start = time.perf_counter()
    block_until_ready(fn(*args))
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def machine_line():
    """The benchmark header: device and versions (JSON), CPU and its estimated peak, XLA flags.

    Three lines: ``{"device", "platform", "jax", "python", "date"}`` as JSON; the CPU model, ISA,
    usable cores and estimated FP32 peak (``sspcab_jax.machine``); the ``XLA_FLAGS`` in effect
    and the project's default CPU flags for this ISA (``sspcab_jax.xla_flags``).
    """
    from sspcab_jax.machine import detect_cpu
    from sspcab_jax.xla_flags import default_cpu_flags, wants_cpu_flags

    devices = jax.devices()
    versions = json.dumps(
        {
            "device": f"{len(devices)}x {devices[0].device_kind}",
            "platform": devices[0].platform,
            "jax": jax.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    cpu = detect_cpu()
    state = "applied unless set by the user" if wants_cpu_flags() else "off"
    flags = (
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; project defaults for {cpu.isa}: "
        f"{default_cpu_flags(cpu.isa)!r} ({state})"
    )
    return "\n".join((versions, cpu.summary(), flags))
