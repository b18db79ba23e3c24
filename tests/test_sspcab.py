"""The SSPCAB block: reference semantics and weight conversion, sown loss, dtypes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from numpy.lib.stride_tricks import sliding_window_view

import sspcab_jax
from sspcab_jax import SSPCAB, SSPCAB3D, SSPCAB_LOSS_COLLECTION
from sspcab_jax.convert import sspcab_params_from_torch
from sspcab_jax.layers import count_sown_losses

# --------------------------------------------------------------------------- NumPy references


def np_conv_valid_nchw(x, w, b):
    """Cross-correlation, VALID: x [N, C, *S], w [O, C, *K] (PyTorch layout), b [O]."""
    nd = x.ndim - 2
    windows = sliding_window_view(x, w.shape[2:], axis=tuple(range(2, 2 + nd)))
    letters = "uvw"[:nd]
    spatial = "xyz"[:nd]
    out = np.einsum(f"nc{spatial}{letters},oc{letters}->no{spatial}", windows, w)
    return out + b.reshape((1, -1) + (1,) * nd)


def np_sspcab_torch(x_nchw, sd, k, d, padding="zeros", per_branch=False, relu_after=True):
    """The official block's semantics (sspcab_torch.py; TF and anomalib variants), NumPy NCHW."""
    p = k + d
    c = k + 2 * d + 1
    widths = ((0, 0), (0, 0), (p, p), (p, p))
    xp = np.pad(x_nchw, widths, mode="constant" if padding == "zeros" else "reflect")
    hp, wp = xp.shape[2:]
    crops = {
        "conv1": xp[:, :, : hp - c, : wp - c],
        "conv2": xp[:, :, c:, : wp - c],
        "conv3": xp[:, :, : hp - c, c:],
        "conv4": xp[:, :, c:, c:],
    }
    total = 0
    for name, crop in crops.items():
        branch = np_conv_valid_nchw(crop, sd[f"{name}.weight"], sd[f"{name}.bias"])
        total = total + (np.maximum(branch, 0) if per_branch else branch)
    if relu_after:
        total = np.maximum(total, 0)
    squeeze = total.mean(axis=(2, 3))
    hidden = np.maximum(squeeze @ sd["se.fc1.weight"].T + sd["se.fc1.bias"], 0)
    gate = 1 / (1 + np.exp(-(hidden @ sd["se.fc2.weight"].T + sd["se.fc2.bias"])))
    return total * gate[:, :, None, None]


def random_torch_state_dict(rng, channels, k, r=8):
    sd = {}
    for name in ("conv1", "conv2", "conv3", "conv4"):
        sd[f"{name}.weight"] = rng.normal(0, 0.3, (channels, channels, k, k)).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
    hidden = channels // r
    sd["se.fc1.weight"] = rng.normal(0, 0.5, (hidden, channels)).astype(np.float32)
    sd["se.fc1.bias"] = rng.normal(0, 0.1, hidden).astype(np.float32)
    sd["se.fc2.weight"] = rng.normal(0, 0.5, (channels, hidden)).astype(np.float32)
    sd["se.fc2.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
    return sd


# --------------------------------------------------------------------------- reference semantics


@pytest.mark.parametrize("k,d", [(1, 1), (2, 1), (3, 2)])
def test_converted_torch_weights_match_numpy_reference(k, d):
    rng = np.random.default_rng(k * 10 + d)
    channels = 16
    sd = random_torch_state_dict(rng, channels, k)
    x_nchw = rng.normal(size=(2, channels, 9, 8)).astype(np.float32)
    expected = np_sspcab_torch(x_nchw, sd, k, d)
    params = sspcab_params_from_torch(sd)
    y = SSPCAB(k, d).apply({"params": params}, jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), expected, atol=1e-5)


def test_tf_and_anomalib_variants_match_numpy_reference():
    rng = np.random.default_rng(3)
    channels, k, d = 8, 1, 1
    sd = random_torch_state_dict(rng, channels, k)
    params = sspcab_params_from_torch(sd)
    x_nchw = rng.normal(size=(1, channels, 7, 6)).astype(np.float32)
    x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
    tf_style = SSPCAB(k, d, padding="reflect", activation="per_branch")
    ref = np_sspcab_torch(x_nchw, sd, k, d, "reflect", per_branch=True, relu_after=False)
    np.testing.assert_allclose(
        np.asarray(tf_style.apply({"params": params}, x)).transpose(0, 3, 1, 2), ref, atol=1e-5
    )
    anomalib_style = SSPCAB(k, d, activation="none")
    ref = np_sspcab_torch(x_nchw, sd, k, d, relu_after=False)
    np.testing.assert_allclose(
        np.asarray(anomalib_style.apply({"params": params}, x)).transpose(0, 3, 1, 2),
        ref,
        atol=1e-5,
    )


def test_converter_rejects_incomplete_state_dict():
    sd = random_torch_state_dict(np.random.default_rng(0), 8, 1)
    del sd["conv3.bias"]
    with pytest.raises(ValueError, match="conv3.bias"):
        sspcab_params_from_torch(sd)


def test_converter_accepts_prefix():
    sd = random_torch_state_dict(np.random.default_rng(0), 8, 1)
    nested = {f"model.sspcab.{k}": v for k, v in sd.items()}
    params = sspcab_params_from_torch(nested, prefix="model.sspcab.")
    np.testing.assert_array_equal(params["se"]["fc1"]["kernel"], sd["se.fc1.weight"].T)


def test_parameter_count_matches_reference_formula():
    # Four corner convs, then SE: 4(C^2 k^2 + C) + (C*floor(C/8) + floor(C/8)) + (floor(C/8)*C + C).
    for channels, expected in [(128, 70_288), (64, 17_736)]:
        shapes = jax.eval_shape(SSPCAB().init, jax.random.key(0), jnp.zeros((1, 8, 8, channels)))
        count = sum(np.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes["params"]))
        assert count == expected


def np_channel_transformer_gate(pooled, p, heads=5, dim_head=64):
    """SSMCTB's channel transformer (torch_ssmctb.py) in NumPy; pooled [B, C]."""
    tokens = pooled[..., None] @ p["embed"]["kernel"] + p["embed"]["bias"]
    tokens = tokens + p["position"]
    qkv = tokens @ p["qkv"]["kernel"]
    b, c, _ = qkv.shape
    q, k, v = np.split(qkv, 3, axis=-1)
    q, k, v = (t.reshape(b, c, heads, dim_head).transpose(0, 2, 1, 3) for t in (q, k, v))
    logits = q @ k.transpose(0, 1, 3, 2) * dim_head**-0.5
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).transpose(0, 2, 1, 3).reshape(b, c, heads * dim_head)
    out = attended @ p["out"]["kernel"] + p["out"]["bias"]
    return 1 / (1 + np.exp(-out.mean(-1)))


def test_channel_transformer_matches_numpy_reference():
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 16))
    gate = sspcab_jax.ChannelTransformer()
    params = gate.init(jax.random.key(1), x)["params"]
    y = gate.apply({"params": params}, x)
    p = jax.tree.map(np.asarray, params)
    expected = (
        np.asarray(x) * np_channel_transformer_gate(np.asarray(x).mean((1, 2)), p)[:, None, None, :]
    )
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-5)
    assert params["qkv"].keys() == {"kernel"}  # qkv has no bias, as in the reference


# --------------------------------------------------------------------------- sown loss


class TwoBlockHost(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(16, (3, 3), name="stem")(x)
        a = SSPCAB(name="first")(h)
        b = SSPCAB(attention="transformer", name="second")(nn.relu(a))
        return nn.Conv(3, (1, 1), name="head")(b), (h, a, nn.relu(a), b)


def test_self_supervised_loss_sums_every_block_under_jit_and_grad():
    model = TwoBlockHost()
    x = jax.random.uniform(jax.random.key(0), (2, 12, 12, 3))
    params = model.init(jax.random.key(1), x)["params"]

    @jax.jit
    def loss_fn(params):
        (_, inter), mutated = model.apply({"params": params}, x, mutable=[SSPCAB_LOSS_COLLECTION])
        return sspcab_jax.self_supervised_loss(mutated), (inter, mutated)

    (loss, (inter, mutated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    h, a, relu_a, b = (np.asarray(t, np.float64) for t in inter)
    expected = np.mean((a - h) ** 2) + np.mean((b - relu_a) ** 2)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert count_sown_losses(mutated) == 2
    # No stop-gradient: the loss also trains the layer that produces the block input.
    assert float(jnp.abs(grads["stem"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["second"]["transformer"]["qkv"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["head"]["kernel"]).sum()) == 0


def test_no_loss_is_sown_without_a_mutable_collection():
    model = TwoBlockHost()
    x = jnp.ones((1, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    (_, _), mutated = model.apply({"params": variables["params"]}, x, mutable=["batch_stats"])
    assert count_sown_losses(mutated) == 0
    assert float(sspcab_jax.self_supervised_loss(mutated)) == 0.0


# --------------------------------------------------------------------------- dtypes, errors, NNX


@pytest.mark.parametrize("attention", ["se", "transformer"])
def test_bfloat16_compute_is_finite_and_close_to_float32(attention):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    params = SSPCAB(attention=attention).init(jax.random.key(1), x)["params"]
    y32, m32 = SSPCAB(attention=attention).apply(
        {"params": params}, x, mutable=[SSPCAB_LOSS_COLLECTION]
    )
    y16, m16 = SSPCAB(attention=attention, dtype=jnp.bfloat16).apply(
        {"params": params}, x, mutable=[SSPCAB_LOSS_COLLECTION]
    )
    assert y16.dtype == jnp.bfloat16
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y16)))
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.05, rtol=0.05)
    loss16 = sspcab_jax.self_supervised_loss(m16)
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(loss16, sspcab_jax.self_supervised_loss(m32), rtol=0.05)


@pytest.mark.parametrize(
    "kwargs,shape,field",
    [
        ({}, (1, 8, 8, 4), "reduction_ratio"),
        ({"kernel_size": 0}, (1, 8, 8, 8), "kernel_size"),
        ({"dilation": -1}, (1, 8, 8, 8), "dilation"),
        ({}, (8, 8, 8), "rank"),
        ({"padding": "edge"}, (1, 8, 8, 8), "padding"),
        ({"attention": "spatial"}, (1, 8, 8, 8), "attention"),
        ({"activation": "gelu"}, (1, 8, 8, 8), "activation"),
    ],
)
def test_bad_input_names_the_field(kwargs, shape, field):
    with pytest.raises(ValueError, match=field):
        SSPCAB(**kwargs).init(jax.random.key(0), jnp.ones(shape))


def test_3d_block_rejects_images():
    with pytest.raises(ValueError, match="rank-5"):
        SSPCAB3D().init(jax.random.key(0), jnp.ones((1, 8, 8, 8)))


def test_usable_from_nnx_through_the_bridge():
    from flax import nnx

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    block = nnx.bridge.ToNNX(SSPCAB(), rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(block, x)
    y = block(x)
    assert y.shape == x.shape
    # The same parameters through linen give the same output.
    params = nnx.to_pure_dict(nnx.state(block, nnx.Param))
    np.testing.assert_allclose(SSPCAB().apply({"params": params}, x), y, atol=1e-6)


def test_init_sows_nothing_so_reused_variables_count_once():
    x = jnp.ones((1, 8, 8, 8))
    variables = SSPCAB().init(jax.random.key(0), x)
    assert SSPCAB_LOSS_COLLECTION not in variables
    _, mutated = SSPCAB().apply(variables, x, mutable=[SSPCAB_LOSS_COLLECTION])
    assert count_sown_losses(mutated) == 1
