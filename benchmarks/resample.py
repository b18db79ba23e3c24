"""Align-corners x2 upsampling and 2x2 max pooling: ours vs the textbook forms, fwd and fwd+bwd.

    python -m benchmarks.resample [--repeats 5] [--shapes 8x128x128x128,8x64x64x256]

Upsampling alternatives: a dense interpolation matrix per axis (einsum, ``O(H)`` MACs per output)
and a two-tap gather blend (autodiff backward = scatter-add). Pooling alternative: Flax
``nn.max_pool`` (``reduce_window``; backward = ``select_and_scatter``). Every variant is checked
against ours before it is timed. These are isolated ops: inside the train step the layout pass
and fusion decide more (``benchmarks/README.md`` records both).
"""

from __future__ import annotations

import argparse
import os

from sspcab_jax.xla_flags import apply_default_cpu_flags


def _einsum_upsample(x):
    import jax.numpy as jnp

    from sspcab_jax.models import align_corners_matrix

    h, w = x.shape[-3], x.shape[-2]
    mh = jnp.asarray(align_corners_matrix(h, 2 * h), x.dtype)
    mw = jnp.asarray(align_corners_matrix(w, 2 * w), x.dtype)
    return jnp.einsum("pw,...owc->...opc", mw, jnp.einsum("oh,...hwc->...owc", mh, x))


def _gather_upsample(x):
    import jax.numpy as jnp

    from sspcab_jax.models import align_corners_taps

    for axis in (x.ndim - 3, x.ndim - 2):
        lo, hi, w = align_corners_taps(x.shape[axis], 2 * x.shape[axis])
        shape = [1] * x.ndim
        shape[axis] = -1
        w = jnp.asarray(w, x.dtype).reshape(shape)
        x = jnp.take(x, lo, axis=axis) * (1 - w) + jnp.take(x, hi, axis=axis) * w
    return x


def _flax_pool(x):
    from flax import linen as nn

    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="8x128x128x128,8x64x64x256")
    args = parser.parse_args(argv)
    apply_default_cpu_flags()

    import jax
    import numpy as np

    from benchmarks.common import machine_line, time_fn
    from sspcab_jax.models import max_pool2x, upsample2x

    print(machine_line())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, load {os.getloadavg()[0]:.2f}")
    print(f"{'op':10s} {'shape':18s} {'variant':14s} {'fwd ms':>8s} {'fwd+bwd ms':>10s}")
    for text in args.shapes.split(","):
        shape = tuple(int(s) for s in text.split("x"))
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.nn.relu(jax.random.normal(keys[0], shape))
        up_cot = jax.random.normal(keys[1], (shape[0], 2 * shape[1], 2 * shape[2], shape[3]))
        pool_cot = jax.random.normal(keys[2], (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
        cases = (
            (
                "upsample",
                up_cot,
                (("ours", upsample2x), ("einsum", _einsum_upsample), ("gather", _gather_upsample)),
            ),
            ("max_pool", pool_cot, (("ours", max_pool2x), ("reduce_window", _flax_pool))),
        )
        for op, cot, variants in cases:
            reference = None
            for name, fn in variants:
                forward = jax.jit(fn)

                def forward_backward(v, g, fn=fn):
                    out, vjp = jax.vjp(fn, v)
                    return out, vjp(g)[0]

                both_fn = jax.jit(forward_backward)
                out, grad = both_fn(x, cot)
                if reference is None:
                    reference = (np.asarray(out), np.asarray(grad))
                np.testing.assert_allclose(out, reference[0], atol=1e-5)
                np.testing.assert_allclose(grad, reference[1], atol=1e-4)
                _, fwd = time_fn(forward, x, repeats=args.repeats)
                _, both = time_fn(both_fn, x, cot, repeats=args.repeats)
                print(
                    f"{op:10s} {text:18s} {name:14s} {fwd * 1e3:8.1f} {both * 1e3:10.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
