"""Forward and forward+backward time of each masked-convolution formulation.

Compares, for one input shape: the k = 1 dilated 2x2 conv, one conv over concatenated corner
crops, four convs on the crops, the full masked footprint kernel, and a plain 3x3 conv of the same
width (the layer SSPCAB replaces). Usage:

    python -m benchmarks.block [--shape 8,16,16,1024] [--repeats 10]
"""

import argparse
import os

import jax
import jax.numpy as jnp
from flax import linen as nn

from benchmarks.common import machine_line, time_fn
from sspcab_jax.layers import MaskedConv, corner_visibility
from sspcab_jax.xla_flags import apply_default_cpu_flags


def measure(module, x, repeats):
    params = module.init(jax.random.key(0), x)

    forward = jax.jit(lambda p, x: module.apply(p, x))

    @jax.jit
    def forward_backward(p, x):
        return jax.grad(lambda p, x: jnp.sum(module.apply(p, x) ** 2), argnums=(0, 1))(p, x)

    compile_f, fwd = time_fn(forward, params, x, repeats=repeats)
    _, fwd_bwd = time_fn(forward_backward, params, x, repeats=repeats)
    return compile_f, fwd, fwd_bwd


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="8,16,16,1024", help="B,H,W,C")
    parser.add_argument("--kernel-sizes", default="1,2,3")
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    apply_default_cpu_flags()  # before the first computation starts the backend
    shape = tuple(int(s) for s in args.shape.split(","))
    dtype = jnp.dtype(args.dtype)
    x = jax.random.normal(jax.random.key(0), shape, dtype)
    d = args.dilation
    print(machine_line())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"input {shape} {args.dtype}, dilation {d}")
    print(f"{'layer':34s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'vs 3x3 fwd':>10s}")
    _, base_fwd, base_bwd = measure(nn.Conv(shape[-1], (3, 3), dtype=dtype), x, args.repeats)
    print(f"{'plain 3x3 conv':34s} {base_fwd * 1e3:9.2f} {base_bwd * 1e3:11.2f} {1.0:10.2f}")
    for k in (int(s) for s in args.kernel_sizes.split(",")):
        forms = (["dilated"] if k == 1 else []) + ["concat", "crops"]
        for form in forms:
            module = MaskedConv(k, d, formulation=form, dtype=dtype)
            _, fwd, bwd = measure(module, x, args.repeats)
            name = f"k={k} {form}"
            print(f"{name:34s} {fwd * 1e3:9.2f} {bwd * 1e3:11.2f} {fwd / base_fwd:10.2f}")
        module = MaskedConv(k, d, visibility=corner_visibility(k, d), dtype=dtype)
        _, fwd, bwd = measure(module, x, args.repeats)
        name = f"k={k} masked footprint (not used)"
        print(f"{name:34s} {fwd * 1e3:9.2f} {bwd * 1e3:11.2f} {fwd / base_fwd:10.2f}")


if __name__ == "__main__":
    main()
