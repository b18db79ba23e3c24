"""Cost of checkpoint checksums at paper size: hashing vs the save and restore they guard.

    python -m benchmarks.checkpoint_integrity [--repeats 3] [--config configs/draem_mvtec.py]

Builds the DRAEM training state of ``configs/draem_mvtec.py`` (256x256, widths 128/64: params
and Adam moments, ~1.2 GB of float32) with random values (hashing speed does not depend on
them), then times, as medians over ``--repeats``:

* ``checksums(state)``: what every save adds in the caller's thread and every restore adds after
  reading (the same function over the same bytes);
* a whole save (until ``Checkpointer.save`` returns, and until the write is committed) and a
  whole restore (reading plus verification), in a temporary directory;
* other hashes over the same bytes (zlib CRC-32 and Adler-32, hashlib SHA-1 and BLAKE2b), which
  is why CRC-32 was chosen.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import statistics
import tempfile
import time
import zlib

import jax
import numpy as np

from benchmarks.common import machine_line
from sspcab_jax.training.checkpoint import Checkpointer, checksums
from sspcab_jax.training.state import create_model, create_train_state


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/draem_mvtec.py")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def _random_state(config_path):
    spec = importlib.util.spec_from_file_location("bench_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    model = create_model(config)
    shapes = jax.eval_shape(lambda: create_train_state(config, model, jax.random.key(0)))
    rng = np.random.default_rng(0)
    leaves, treedef = jax.tree.flatten(shapes)
    arrays = [rng.standard_normal(s.shape).astype(s.dtype) for s in leaves]
    return config, jax.tree.unflatten(treedef, arrays)


def _median(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = _parse(argv)
    print(machine_line(), f"loadavg={os.getloadavg()[0]:.1f}")
    config, state = _random_state(args.config)
    arrays = [a for a in jax.tree.leaves(state) if hasattr(a, "nbytes")]
    gib = sum(a.nbytes for a in arrays) / 2**30
    params = sum(a.size for a in jax.tree.leaves(state.params))
    print(
        f"state: {config.draem.recon_width}/{config.draem.disc_width} widths, {params / 1e6:.1f} M "
        f"parameters, {len(arrays)} arrays, {gib:.2f} GiB (params + Adam moments + stats)"
    )

    hashes = {
        "crc32 (used)": zlib.crc32,
        "adler32": zlib.adler32,
        "sha1": lambda b: hashlib.sha1(b).digest(),
        "blake2b": lambda b: hashlib.blake2b(b).digest(),
    }
    views = [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays]
    for name, fn in hashes.items():
        seconds = _median(lambda fn=fn: [fn(v) for v in views], args.repeats)
        print(f"{name:13s} {seconds:6.3f} s  {gib / seconds:5.2f} GiB/s")

    checksum_s = _median(lambda: checksums(state), args.repeats)
    target = jax.tree.map(np.zeros_like, state)
    returns, saves, restores = [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for step in range(1, args.repeats + 1):
            with Checkpointer(directory, keep_latest=1) as ckpt:
                start = time.perf_counter()
                ckpt.save(step, state)
                returns.append(time.perf_counter() - start)  # the caller waits this long
            saves.append(time.perf_counter() - start)  # leaving the block waits for the write
            with Checkpointer(directory, read_only=True) as ckpt:
                start = time.perf_counter()
                restored = ckpt.restore(target)
                restores.append(time.perf_counter() - start)
            assert restored.step == step
    save_s, restore_s = statistics.median(saves), statistics.median(restores)
    returns_s = statistics.median(returns)
    print(f"checksums(state): {checksum_s:.3f} s ({gib / checksum_s:.2f} GiB/s)")
    print(
        f"save: returns after {returns_s:.2f} s, committed after {save_s:.2f} s "
        f"(checksums {100 * checksum_s / save_s:.0f} %); "
        f"restore (verified): {restore_s:.2f} s, checksums {100 * checksum_s / restore_s:.0f} % "
        "of it"
    )


if __name__ == "__main__":
    main()
