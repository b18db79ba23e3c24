"""BatchNorm + ReLU in a conv stack: Flax's ``nn.BatchNorm`` vs ``layers.BatchNorm``, memory, time.

    python -m benchmarks.batch_norm [--repeats 5] [--shape 8x128x128x128] [--layers 4]
        [--fusions dot,reduce dot]

For each XLA:CPU YNN fusion setting (compiled per variant with ``compiler_options``, all in one
process) prints the XLA buffer plan's temporaries of a jitted gradient of a stack of
conv 3x3 -> BatchNorm -> ReLU layers and its median time. With ``reduce`` fusions, plain
autodiff keeps each layer's ``x - mean`` until the backward pass (XLA cannot fuse it into a
library reduction and merges it with the forward's copy); ``layers.BatchNorm`` recomputes it.
The two variants' gradients are checked against each other before timing.
"""

from __future__ import annotations

import argparse
import os

from sspcab_jax.xla_flags import apply_default_cpu_flags


def _stack_loss(norm, layers):
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    def loss(kernels, scales, x):
        for kernel, scale in zip(kernels, scales, strict=True):
            x = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            variables = {
                "params": {"scale": scale, "bias": jnp.zeros_like(scale)},
                "batch_stats": {"mean": jnp.zeros_like(scale), "var": jnp.ones_like(scale)},
            }
            x, _ = norm.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
            if isinstance(norm, nn.BatchNorm):
                x = nn.relu(x)
        return jnp.mean(x**2)

    return loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default="8x128x128x128")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--fusions", nargs="+", default=["dot,reduce", "dot"])
    args = parser.parse_args(argv)
    apply_default_cpu_flags()

    import jax
    import numpy as np
    from flax import linen as nn

    from benchmarks.common import machine_line, time_fn
    from sspcab_jax.layers import BatchNorm

    shape = tuple(int(s) for s in args.shape.split("x"))
    c = shape[-1]
    keys = jax.random.split(jax.random.key(0), args.layers + 1)
    x = jax.random.normal(keys[0], shape)
    kernels = [jax.random.normal(k, (3, 3, c, c)) * (2.0 / (9 * c)) ** 0.5 for k in keys[1:]]
    scales = [jax.numpy.ones((c,)) for _ in range(args.layers)]
    variants = {
        "flax nn.BatchNorm": nn.BatchNorm(epsilon=1e-5),
        "layers.BatchNorm": BatchNorm(activation=nn.relu),
    }
    activation_mib = np.prod(shape) * 4 / 2**20

    print(machine_line())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, load {os.getloadavg()[0]:.2f}")
    print(f"{args.layers} layers of conv 3x3 -> BatchNorm -> ReLU on {args.shape}")
    print(f"(one activation = {activation_mib:.0f} MiB); jitted gradient w.r.t. kernels and scales")
    print(f"{'ynn fusions':12s} {'variant':18s} {'XLA temp MiB':>12s} {'fwd+bwd ms':>10s}")
    for fusions in args.fusions:
        options = {
            "xla_cpu_experimental_ynn_fusion_type": ",".join(
                "LIBRARY_FUSION_TYPE_" + name.upper() for name in fusions.split(",")
            )
        }
        reference = None
        for name, norm in variants.items():
            grad = jax.jit(jax.grad(_stack_loss(norm, args.layers), argnums=(0, 1)))
            compiled = grad.lower(kernels, scales, x).compile(compiler_options=options)
            temp_mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
            grads = compiled(kernels, scales, x)
            if reference is None:
                reference = grads
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
                grads,
                reference,
            )
            _, seconds = time_fn(compiled, kernels, scales, x, repeats=args.repeats)
            print(f"{fusions:12s} {name:18s} {temp_mib:12.0f} {seconds * 1e3:10.1f}", flush=True)


if __name__ == "__main__":
    main()
