"""Timing helpers shared by the benchmark scripts."""

import json
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
    devices = jax.devices()
    return json.dumps(
        {
            "device": f"{len(devices)}x {devices[0].device_kind}",
            "platform": devices[0].platform,
            "jax": jax.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        }
    )
