"""DRAEM: layer tables (parameter counts), wiring, SSPCAB placements, upsampling, scoring.

Paper widths only via ``jax.eval_shape``; everything computed runs at width 8 on 32x32 images,
in as few compilations as possible (XLA CPU compiles dominate the run time).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from scipy import ndimage

from sspcab_jax.layers import SSPCAB_LOSS_COLLECTION, count_sown_losses, self_supervised_loss
from sspcab_jax.losses import draem_loss
from sspcab_jax.models import (
    CBR,
    DiscriminativeNet,
    Draem,
    ReconstructiveNet,
    anomaly_map,
    image_score,
    mean_filter,
    upsample2x,
)

MUTABLE = ["batch_stats", SSPCAB_LOSS_COLLECTION]


def n_params(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def abstract_variables(model, shape, **kwargs):
    """Abstract ``params`` and ``batch_stats`` (init also sows SSPCAB losses: dropped here)."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda k, x: model.init(k, x, **kwargs), jax.random.key(0), x)
    return {k: v for k, v in variables.items() if k != SSPCAB_LOSS_COLLECTION}


def host_variables(model, shape, seed=0):
    """Random variables built on the host from the abstract init (no XLA compile of init)."""
    rng = np.random.default_rng(seed)
    abstract = abstract_variables(model, shape, train=False)

    def make(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape)
        elif name == "bias" and path[-2].key == "fc1":
            # Keep the narrow SE's single hidden unit (8 // 8) alive so every leaf gets a grad.
            value = np.ones(leaf.shape)
        elif name == "scale":
            value = 1 + 0.05 * rng.normal(size=leaf.shape)
        elif name == "var":
            value = np.ones(leaf.shape)
        elif name == "mean":
            value = np.zeros(leaf.shape)
        else:
            value = rng.normal(0, 0.05, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(make, abstract)


def run_quickly(fn, *args):
    """Jit and run ``fn`` with LLVM optimisation off: XLA CPU compile time dominates these tests."""
    compiled = jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})
    return compiled(*args)


# --------------------------------------------------------------------------- paper-size tables


@pytest.mark.parametrize(
    "placement, recon, disc, total",
    [
        ("none", 69_048_579, 28_374_146, 97_422_725),
        ("bottleneck", 54_629_763, 28_374_146, 83_003_909),
        ("penultimate", 68_971_283, 28_354_954, 97_326_237),
    ],
)
def test_parameter_counts_at_paper_widths(placement, recon, disc, total):
    # Official model_unet.py: 69,048,579 + 28,374,146 = 97,422,725; anomalib's bottleneck:
    # 83,003,909.
    # Penultimate: one 3x3 conv per net becomes SSPCAB(128) (70,288) and SSPCAB(64) (17,736).
    params = abstract_variables(Draem(sspcab_placement=placement), (1, 64, 64, 3), train=False)
    params = params["params"]
    assert n_params(params["reconstructive"]) == recon
    assert n_params(params["discriminative"]) == disc
    assert n_params(params) == total


def test_subnetworks_alone_match_the_tables():
    rec = abstract_variables(ReconstructiveNet(), (1, 16, 16, 3), train=False)["params"]
    disc = abstract_variables(DiscriminativeNet(), (1, 32, 32, 6), train=False)["params"]
    assert n_params(rec) == 69_048_579
    assert n_params(disc) == 28_374_146
    assert n_params(rec["enc_block5_0"]) + n_params(rec["enc_block5_1"]) == 18_880_512


# --------------------------------------------------------------------------- shapes, sown losses


@pytest.mark.parametrize("placement, blocks", [("none", 0), ("bottleneck", 1), ("penultimate", 2)])
def test_narrow_shapes_and_sown_losses(placement, blocks):
    model = Draem(recon_width=8, disc_width=8, sspcab_placement=placement)
    variables = abstract_variables(model, (2, 96, 64, 3), train=False)
    (rec, logits), mutated = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=MUTABLE),
        variables,
        jax.ShapeDtypeStruct((2, 96, 64, 3), jnp.float32),
    )
    assert rec.shape == (2, 96, 64, 3) and logits.shape == (2, 96, 64, 2)
    assert count_sown_losses(mutated) == blocks
    params = variables["params"]
    if placement == "bottleneck":
        assert "enc_block5_sspcab" in params["reconstructive"]
        assert "enc_block5_0" not in params["reconstructive"]
        assert "sspcab" not in params["discriminative"]["dec_db4_1"]
    if placement == "penultimate":
        for net in ("reconstructive", "discriminative"):
            assert set(params[net]["dec_db4_1"]) == {"sspcab", "bn"}


def test_tabulate_summary_prints():
    model = Draem(recon_width=8, disc_width=8, sspcab_placement="penultimate")
    table = nn.tabulate(model, jax.random.key(0), depth=2, console_kwargs={"width": 240})(
        jnp.zeros((1, 32, 32, 3)), train=False
    )
    assert "ReconstructiveNet" in table and "DiscriminativeNet" in table and "CBR" in table
    assert "Total Parameters" in table
    print(table)


# --------------------------------------------------------------------------- computed checks


@pytest.fixture(scope="module")
def computed():
    """One jitted call: train-mode gradients of the total loss; f32 and bf16 forwards."""
    model = Draem(recon_width=8, disc_width=8, sspcab_placement="penultimate")
    shape = (2, 32, 32, 3)
    variables = host_variables(model, shape)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(0, 1, shape), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=shape[:-1]) > 0.7, jnp.float32)
    stats = variables["batch_stats"]

    def forward(m, params, train):
        (rec, logits), mutated = m.apply(
            {"params": params, "batch_stats": stats}, x, train=train, mutable=MUTABLE
        )
        return rec, logits, mutated

    def run(params):
        def total_loss(p):
            rec, logits, mutated = forward(model, p, train=True)
            terms = draem_loss(rec, x, logits, mask, sspcab_loss=self_supervised_loss(mutated))
            return terms["total"]

        # bf16 vs f32 in eval mode: train-mode BatchNorm over the 2x2 (and 1x1) maps of a
        # 32x32 batch of 2 rescales by tiny variances and amplifies any rounding.
        outputs = {}
        for name, m in (("f32", model), ("bf16", model.clone(dtype=jnp.bfloat16))):
            rec, logits, _ = forward(m, params, train=False)
            outputs[name] = (rec, anomaly_map(logits))
        return {"grads": jax.grad(total_loss)(params), **outputs}

    return jax.device_get(run_quickly(run, variables["params"]))


def test_gradients_reach_every_parameter(computed):
    flat = jax.tree_util.tree_flatten_with_path(computed["grads"])[0]
    assert any("sspcab" in jax.tree_util.keystr(p) for p, _ in flat)
    dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(g != 0)]
    assert not dead, f"parameters without gradient: {dead}"


def test_bfloat16_is_finite_and_close_to_float32(computed):
    assert computed["bf16"][0].dtype == jnp.bfloat16  # the reconstruction, in compute dtype
    for ref, low in zip(computed["f32"], computed["bf16"], strict=True):
        low = np.asarray(low, np.float32)
        assert np.all(np.isfinite(low))
        scale = np.max(np.abs(ref)) + 1e-6
        assert np.max(np.abs(low - ref)) / scale < 0.1
        assert np.mean(np.abs(low - ref)) / scale < 0.02


# --------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("order", [("reconstruction", "image"), ("image", "reconstruction")])
def test_discriminator_input_order(order):
    # Replace both sub-networks: the reconstruction becomes a constant 7 and the discriminator
    # returns its own input, so the second output is exactly the concatenation.
    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, ReconstructiveNet):
            return jnp.full_like(args[0], 7.0)
        if context.method_name == "__call__" and isinstance(context.module, DiscriminativeNet):
            return args[0]
        return next_fun(*args, **kwargs)

    x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 32, 32, 3)), jnp.float32)
    with nn.intercept_methods(interceptor):
        _, disc_in = Draem(recon_width=8, disc_width=8, disc_input_order=order).apply(
            {}, x, train=False
        )
    first, second = disc_in[..., :3], disc_in[..., 3:]
    rec_part, img_part = (first, second) if order[0] == "reconstruction" else (second, first)
    np.testing.assert_array_equal(rec_part, 7.0)
    np.testing.assert_array_equal(img_part, x)


def _stub_networks(scale):
    """Interceptor: reconstruction = ``scale * image``; discriminator = its input's 2 channels."""

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, ReconstructiveNet):
            return scale * args[0]
        if context.method_name == "__call__" and isinstance(context.module, DiscriminativeNet):
            return args[0][..., :2]
        return next_fun(*args, **kwargs)

    return interceptor


@pytest.mark.parametrize("train", [True, False])
def test_reconstruction_is_detached_only_at_test_time(train):
    # train_DRAEM.py: in training the discriminator's loss reaches the reconstructive net
    # through the reconstruction; at test time the reconstruction is detached.
    x = jnp.full((1, 32, 32, 3), 0.5)

    def disc_output(scale):
        with nn.intercept_methods(_stub_networks(scale)):
            _, logits = Draem(recon_width=8, disc_width=8).apply({}, x, train=train)
        return jnp.sum(logits)

    grad = float(jax.grad(disc_output)(2.0))
    assert (grad != 0) == train


# --------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("scheme", ["official", "pytorch"])
def test_initialisation_schemes(scheme):
    channels = 64
    variables = CBR(channels, init_scheme=scheme).init(
        jax.random.key(0), jnp.zeros((2, 4, 4, channels)), train=False
    )
    kernel = np.asarray(variables["params"]["conv"]["kernel"])
    bias = np.asarray(variables["params"]["conv"]["bias"])
    scale = np.asarray(variables["params"]["bn"]["scale"])
    bound = 1 / np.sqrt(channels * 9)  # PyTorch default, fan_in = C_in * 3 * 3
    assert np.all(np.abs(bias) <= bound) and bias.std() > bound / 3
    if scheme == "official":  # weights_init of train_DRAEM.py
        assert kernel.std() == pytest.approx(0.02, rel=0.05)
        assert scale.mean() == pytest.approx(1.0, abs=0.01) and scale.std() > 0.01
    else:
        assert np.all(np.abs(kernel) <= bound)
        assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
        np.testing.assert_array_equal(scale, 1.0)
    np.testing.assert_array_equal(variables["params"]["bn"]["bias"], 0.0)


# --------------------------------------------------------------------------- upsampling, scoring


def np_upsample_align_corners(x):
    """Bilinear x2 on axes 1, 2 of [B, H, W, C]; output i samples input i * (n-1) / (2n-1)."""
    b, h, w, c = x.shape
    out = np.zeros((b, 2 * h, 2 * w, c))
    for i in range(2 * h):
        y = i * (h - 1) / (2 * h - 1)
        y0 = min(int(np.floor(y)), h - 1)
        y1 = min(y0 + 1, h - 1)
        fy = y - y0
        for j in range(2 * w):
            xx = j * (w - 1) / (2 * w - 1)
            x0 = min(int(np.floor(xx)), w - 1)
            x1 = min(x0 + 1, w - 1)
            fx = xx - x0
            top = (1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]
            bottom = (1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]
            out[:, i, j] = (1 - fy) * top + fy * bottom
    return out


def test_upsample_matches_numpy_align_corners():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    ours = np.asarray(upsample2x(jnp.asarray(x)))
    np.testing.assert_allclose(ours, np_upsample_align_corners(x), atol=1e-5)
    np.testing.assert_allclose(ours[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]])
    # jax.image.resize is half-pixel (align_corners=False): it would not match.
    half_pixel = np.asarray(jax.image.resize(x, (2, 10, 14, 3), "bilinear"))
    assert np.max(np.abs(half_pixel - ours)) > 1e-2
    clip = np.asarray(upsample2x(jnp.ones((1, 2, 3, 4, 1))))
    assert clip.shape == (1, 2, 6, 8, 1)


def test_anomaly_map_is_softmax_of_anomalous_channel():
    logits = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype(np.float32)
    expected = 1 / (1 + np.exp(logits[..., 0] - logits[..., 1]))
    np.testing.assert_allclose(anomaly_map(jnp.asarray(logits)), expected, atol=1e-6)


def test_image_score_mean_filter_counts_zero_padding():
    amap = np.random.default_rng(0).uniform(size=(2, 40, 33)).astype(np.float32)
    amap[1, :3, :3] = 5.0  # a corner blob: the filtered max depends on the padding rule
    # scipy's constant-mode uniform filter divides by 21*21 including the zeros (PyTorch
    # avg_pool2d count_include_pad=True), as test_DRAEM.py.
    ref = ndimage.uniform_filter(amap.astype(np.float64), size=(1, 21, 21), mode="constant")
    np.testing.assert_allclose(mean_filter(jnp.asarray(amap)), ref, atol=1e-6)
    np.testing.assert_allclose(image_score(jnp.asarray(amap)), ref.max(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(image_score(jnp.asarray(amap), "max"), amap.max(axis=(1, 2)))
    with pytest.raises(ValueError, match="mode"):
        image_score(jnp.asarray(amap), "mean")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, (1, 32, 32, 1), "in_channels"),
        ({}, (1, 48, 32, 3), "multiples of 32"),
        ({"sspcab_placement": "middle"}, (1, 32, 32, 3), "sspcab_placement"),
        ({"disc_input_order": ("image", "image")}, (1, 32, 32, 3), "disc_input_order"),
        ({"init_scheme": "xavier"}, (1, 32, 32, 3), "init_scheme"),
    ],
)
def test_bad_configuration_raises(kwargs, shape, match):
    model = Draem(recon_width=8, disc_width=8, **kwargs)
    with pytest.raises(ValueError, match=match):
        abstract_variables(model, shape, train=False)


def test_cbr_with_sspcab_needs_equal_channels():
    from sspcab_jax.layers import SSPCAB

    with pytest.raises(ValueError, match="keeps channels"):
        abstract_variables(CBR(16, sspcab=SSPCAB), (1, 8, 8, 8), train=False)
