"""``Draem(remat=True)`` recomputes activations but changes no value or gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.layers import SSPCAB_LOSS_COLLECTION, self_supervised_loss
from sspcab_jax.models import Draem


def _loss_and_grads(model, variables, x):
    def loss_fn(params):
        (rec, logits), mutated = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats", SSPCAB_LOSS_COLLECTION],
        )
        loss = jnp.mean((rec - x) ** 2) + jnp.mean(logits**2) + self_supervised_loss(mutated)
        return loss, mutated["batch_stats"]

    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])


@pytest.mark.parametrize("placement", ["none", "penultimate", "bottleneck"])
def test_remat_same_params_outputs_gradients(placement):
    # Float64: in float32 the deep BatchNorm stack turns fusion-order rounding into gradient
    # noise (conv biases before BatchNorm have a true gradient of zero).
    with jax.enable_x64(True):
        _check_remat(placement)


def _check_remat(placement):
    f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
    # The smallest input each placement accepts: the bottleneck block needs a 4x4 map (H/16).
    side = 64 if placement == "bottleneck" else 32
    x = jax.random.uniform(jax.random.key(1), (2, side, side, 3), jnp.float64)
    plain = Draem(8, 8, sspcab_placement=placement, **f64)
    remat = Draem(8, 8, sspcab_placement=placement, remat=True, **f64)
    variables = plain.init(jax.random.key(0), x, train=False)
    variables_remat = remat.init(jax.random.key(0), x, train=False)
    assert jax.tree_util.tree_structure(variables["params"]) == jax.tree_util.tree_structure(
        variables_remat["params"]
    )
    (loss, stats), grads = _loss_and_grads(plain, variables, x)
    (loss_r, stats_r), grads_r = _loss_and_grads(remat, variables, x)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-12)
    _assert_trees_close(grads_r, grads, rtol=1e-8, atol=1e-10)
    _assert_trees_close(stats_r, stats, rtol=1e-10, atol=1e-12)
    out = plain.apply(variables, x, train=False)
    out_r = remat.apply(variables, x, train=False)
    _assert_trees_close(out_r, out, rtol=1e-10, atol=1e-12)


def _assert_trees_close(actual, desired, **tolerances):
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, **tolerances), actual, desired
    )
