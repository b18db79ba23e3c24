"""Inference cost of SSPCAB: time per image without and with the block (cf. paper Table 3).

    python -m benchmarks.overhead [--repeats 7] [--paper]

Variants: DRAEM with ``sspcab_placement`` none / bottleneck / penultimate, and the plain
auto-encoder with no block / early / middle / late. All variants are built and compiled in one
process (compile time printed separately), warmed up, then timed round-robin within each model
family (one call of each variant per repeat, so load changes on a shared machine hit every
variant alike); figures are medians per image with the relative increase over the variant's
baseline, as the paper's supplementary Table 3. Default sizes are
moderate for CPUs (DRAEM 128x128 widths 32/16; auto-encoder 64x64 crops); ``--paper`` uses DRAEM
256x256 widths 128/64 and the auto-encoder on 256x256 frames.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sspcab_jax.xla_flags import apply_default_cpu_flags


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="paper sizes (slow on CPU)")
    parser.add_argument("--draem-size", type=int, default=128)
    parser.add_argument("--draem-widths", default="32,16", help="recon,disc")
    parser.add_argument("--ae-size", type=int, default=64)
    parser.add_argument("--ae-channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("draem", "ae"), default=None)
    parser.add_argument("--no-xla-flags", action="store_true", help="skip the default CPU flags")
    args = parser.parse_args(argv)
    if args.paper:
        args.draem_size, args.draem_widths, args.ae_size = 256, "128,64", 256
    return args


def variants(args):
    """``[(family, label, module, input shape, apply kwargs)]`` of every variant to time."""
    from sspcab_jax.models import ConvAutoencoder, Draem

    recon, disc = (int(w) for w in args.draem_widths.split(","))
    out = []
    if args.only in (None, "draem"):
        shape = (args.batch, args.draem_size, args.draem_size, 3)
        for placement in ("none", "bottleneck", "penultimate"):
            model = Draem(recon, disc, sspcab_placement=placement)
            out.append(("draem", placement, model, shape, {"train": False}))
    if args.only in (None, "ae"):
        shape = (args.batch, args.ae_size, args.ae_size, args.ae_channels)
        for position in ("none", "early", "middle", "late"):
            positions = () if position == "none" else (position,)
            model = ConvAutoencoder(channels=args.ae_channels, sspcab_positions=positions)
            out.append(("autoencoder", position, model, shape, {}))
    return out


def main(argv=None):
    args = _parse(argv)
    if not args.no_xla_flags:
        apply_default_cpu_flags()
    import jax
    import jax.numpy as jnp

    from benchmarks.common import machine_line

    print(machine_line())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; batch {args.batch}")
    runs = []
    for family, label, model, shape, kwargs in variants(args):
        x = jax.random.uniform(jax.random.key(1), shape)
        variables = jax.jit(lambda k, x, m=model, kw=kwargs: m.init(k, x, **kw))(
            jax.random.key(0), x
        )
        variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
        fn = jax.jit(lambda v, x, m=model, kw=kwargs: m.apply(v, x, **kw))
        start = time.perf_counter()
        compiled = fn.lower(variables, x).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(variables, x))  # warm-up
        runs.append(dict(family=family, label=label, fn=compiled, args=(variables, x), times=[]))
        runs[-1].update(compile_s=compile_s, shape=shape)
    # Round-robin within each family: a small model timed right after a large one runs on cold
    # caches (the auto-encoder's first variant measured 70 % slower that way).
    for family in dict.fromkeys(run["family"] for run in runs):
        group = [run for run in runs if run["family"] == family]
        for _ in range(args.repeats):
            for run in group:
                start = time.perf_counter()
                jax.block_until_ready(run["fn"](*run["args"]))
                run["times"].append(time.perf_counter() - start)
    print(f"{'model':12s} {'sspcab':12s} {'input':18s} {'ms/image':>9s} {'increase':>9s} compile_s")
    base = {}
    for run in runs:
        ms = 1e3 * statistics.median(run["times"]) / run["shape"][0]
        base.setdefault(run["family"], ms)
        increase = 100 * (ms / base[run["family"]] - 1)
        shape = "x".join(str(s) for s in run["shape"])
        print(
            f"{run['family']:12s} {run['label']:12s} {shape:18s} {ms:9.2f} {increase:8.1f}% "
            f"{run['compile_s']:9.1f}"
        )
    print(f"medians of {args.repeats} round-robin repeats; load {os.getloadavg()[0]:.2f}")
    del jnp


if __name__ == "__main__":
    main()
