"""``layers.BatchNorm``: Flax's BatchNorm numerics, a hand-checked backward pass, less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from sspcab_jax.layers import BatchNorm, batch_statistics

EPS = 1e-5


def _numpy_forward(x, scale, bias, relu=True):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = np.maximum((x**2).mean(axes) - mean**2, 0.0)
    y = (x - mean) / np.sqrt(var + EPS) * scale + bias
    return (np.maximum(y, 0.0) if relu else y), mean, var


def _numpy_backward(x, scale, bias, upstream):
    """The textbook BatchNorm + ReLU backward pass, written out by hand."""
    axes = tuple(range(x.ndim - 1))
    n = np.prod(x.shape[:-1])
    mean = x.mean(axes)
    inv = 1.0 / np.sqrt(x.var(axes) + EPS)
    x_hat = (x - mean) * inv
    g = upstream * (x_hat * scale + bias > 0)
    d_bias = g.sum(axes)
    d_scale = (g * x_hat).sum(axes)
    d_xhat = g * scale
    d_x = inv / n * (n * d_xhat - d_xhat.sum(axes) - x_hat * (d_xhat * x_hat).sum(axes))
    return d_x, d_scale, d_bias


def _variables(shape, seed=0, dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(seed), 3)
    c = shape[-1]
    return {
        "params": {
            "scale": jax.random.uniform(keys[0], (c,), dtype, 0.5, 1.5),
            "bias": jax.random.normal(keys[1], (c,), dtype) * 0.3,
        },
        "batch_stats": {"mean": jnp.zeros((c,), dtype), "var": jnp.ones((c,), dtype)},
    }


@pytest.mark.parametrize("shape", [(4, 5, 6, 3), (2, 3, 4, 5, 6)])
def test_train_mode_forward_and_running_statistics_match_numpy(shape):
    with jax.enable_x64(True):
        x = np.random.default_rng(0).normal(2.0, 3.0, shape)
        variables = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), _variables(shape))
        module = BatchNorm(momentum=0.9, activation=nn.relu, param_dtype=jnp.float64)
        out, mutated = module.apply(
            variables, jnp.asarray(x), use_running_average=False, mutable=["batch_stats"]
        )
        scale, bias = (np.asarray(variables["params"][k]) for k in ("scale", "bias"))
        expected, mean, var = _numpy_forward(x, scale, bias)
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
        assert (np.asarray(out) == 0).any() and (np.asarray(out) > 0).any()
        # Flax convention: new = momentum * old + (1 - momentum) * batch (biased variance).
        np.testing.assert_allclose(mutated["batch_stats"]["mean"], 0.1 * mean, rtol=1e-12)
        np.testing.assert_allclose(mutated["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-12)


def test_eval_mode_uses_the_running_statistics():
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 5)).astype(np.float32)
    variables = _variables(x.shape)
    variables["batch_stats"] = {
        "mean": jnp.linspace(-1.0, 1.0, 5),
        "var": jnp.linspace(0.5, 2.0, 5),
    }
    out = BatchNorm(use_running_average=True).apply(variables, jnp.asarray(x))
    stats = {k: np.asarray(v) for k, v in variables["batch_stats"].items()}
    params = {k: np.asarray(v) for k, v in variables["params"].items()}
    expected = (x - stats["mean"]) / np.sqrt(stats["var"] + EPS) * params["scale"] + params["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 6, 6, 3), (2, 3, 4, 4, 2)])
def test_gradients_match_the_hand_written_backward(shape):
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x = rng.normal(1.0, 2.0, shape)
        upstream = rng.normal(size=shape)
        scale = rng.uniform(0.5, 1.5, shape[-1])
        bias = rng.normal(size=shape[-1]) * 0.3
        module = BatchNorm(momentum=0.9, activation=nn.relu, param_dtype=jnp.float64)
        stats = {"mean": jnp.zeros(shape[-1]), "var": jnp.ones(shape[-1])}

        def loss(x, scale, bias):
            out, _ = module.apply(
                {"params": {"scale": scale, "bias": bias}, "batch_stats": stats},
                x,
                use_running_average=False,
                mutable=["batch_stats"],
            )
            return jnp.sum(out * upstream)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, scale, bias)
        for got, want in zip(grads, _numpy_backward(x, scale, bias, upstream), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_is_a_drop_in_for_flax_batchnorm_plus_activation():
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 6)) * 2.0 + 1.0
    ours = BatchNorm(momentum=0.9, activation=nn.relu)
    flax_bn = nn.BatchNorm(momentum=0.9, epsilon=EPS)
    variables = ours.init(jax.random.key(0), x, use_running_average=False)
    flax_variables = flax_bn.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(flax_variables)
    variables = _variables(x.shape, seed=4)

    def run(module, activation):
        def loss(params, x):
            out, mutated = module.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                use_running_average=False,
                mutable=["batch_stats"],
            )
            out = activation(out)
            return jnp.sum(out * jnp.cos(out)), (out, mutated["batch_stats"])

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(variables["params"], x)

    grads, (out, stats) = run(ours, lambda y: y)
    flax_grads, (flax_out, flax_stats) = run(flax_bn, nn.relu)
    np.testing.assert_allclose(out, flax_out, rtol=1e-6, atol=1e-6)
    for tree, flax_tree in ((grads, flax_grads), (stats, flax_stats)):
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
            tree,
            flax_tree,
        )


def test_axis_name_averages_statistics_over_the_named_axis():
    x = jax.random.normal(jax.random.key(5), (4, 3, 3, 2)) + jnp.arange(4.0)[:, None, None, None]
    variables = _variables(x.shape)

    def apply(x, axis_name=None):
        module = BatchNorm(momentum=0.0, axis_name=axis_name)
        return module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])

    whole, whole_stats = apply(x)
    shards, shard_stats = jax.vmap(lambda x: apply(x, "shard"), axis_name="shard")(
        x.reshape(2, 2, 3, 3, 2)
    )
    np.testing.assert_allclose(shards.reshape(x.shape), whole, rtol=1e-5, atol=1e-5)
    for key in ("mean", "var"):
        want = whole_stats["batch_stats"][key]
        for shard in (0, 1):
            np.testing.assert_allclose(shard_stats["batch_stats"][key][shard], want, rtol=1e-5)
    # Without the axis each shard would see only its own half (different means).
    own, _ = jax.vmap(apply)(x.reshape(2, 2, 3, 3, 2))
    assert not np.allclose(own.reshape(x.shape), whole, atol=1e-3)


def test_batch_statistics_are_float32_for_half_precision_inputs():
    x = np.random.default_rng(6).normal(3.0, 2.0, (8, 4, 4, 3))
    mean, var = batch_statistics(jnp.asarray(x, jnp.bfloat16))
    assert mean.dtype == var.dtype == jnp.float32
    x_bf16 = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64)
    np.testing.assert_allclose(mean, x_bf16.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(var, x_bf16.var((0, 1, 2)), rtol=1e-4)
    out = BatchNorm(dtype=jnp.bfloat16, activation=nn.relu).init_with_output(
        jax.random.key(0), jnp.asarray(x, jnp.bfloat16), use_running_average=False
    )[0]
    assert out.dtype == jnp.bfloat16


def test_batch_statistics_clip_a_negative_fast_variance_to_zero():
    # E[x²] - E[x]² of a constant large value rounds below zero in float32.
    x = jnp.full((3, 2, 2, 1), 1000.1, jnp.float32)
    _, var = batch_statistics(x)
    assert float(var[0]) == 0.0


def test_backward_keeps_fewer_buffers_than_autodiff_when_reductions_are_library_fusions():
    """The reason the layer exists: with XLA:CPU's YNN reduce fusions, plain autodiff of
    BatchNorm + ReLU keeps ``x - mean`` alive until the backward pass; ours recomputes it."""
    if jax.default_backend() != "cpu":
        pytest.skip("the compiler option is XLA:CPU's")
    x = jnp.ones((8, 32, 32, 32))
    kernels = [jnp.full((3, 3, 32, 32), 0.01) for _ in range(4)]

    def network(norm):
        def loss(kernels, x):
            for i, kernel in enumerate(kernels):
                x = jax.lax.conv_general_dilated(
                    x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
                out, _ = norm.apply(
                    _variables(x.shape, seed=i), x, use_running_average=False, mutable=True
                )
                x = out if norm is ours else nn.relu(out)
            return jnp.sum(x**2)

        compiled = (
            jax.jit(jax.grad(loss))
            .lower(kernels, x)
            .compile(
                compiler_options={
                    "xla_cpu_experimental_ynn_fusion_type": (
                        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
                    )
                }
            )
        )
        return compiled.memory_analysis().temp_size_in_bytes

    ours = BatchNorm(activation=nn.relu)
    activation_bytes = 8 * 32 * 32 * 32 * 4
    saved = network(nn.BatchNorm(epsilon=EPS)) - network(ours)
    assert saved >= 2 * activation_bytes, saved
