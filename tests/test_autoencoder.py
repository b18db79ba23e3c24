"""Plain auto-encoder: the eight placements of supplementary Table 1, masked centre, 3D clips."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from sspcab_jax.layers import (
    SSPCAB,
    SSPCAB_LOSS_COLLECTION,
    count_sown_losses,
    self_supervised_loss,
    visible_offsets,
)
from sspcab_jax.models import ConvAutoencoder, reconstruction_error_map, reconstruction_score

POSITIONS = ("early", "middle", "late")
SUBSETS = [s for r in range(4) for s in itertools.combinations(POSITIONS, r)]


def subset_id(positions):
    return "+".join(positions) or "none"


def abstract_params(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def host_params(model, shape, seed=0):
    """Random parameters built on the host from the abstract init (no XLA compile of init)."""
    rng = np.random.default_rng(seed)

    def make(path, leaf):
        if path[-1].key == "kernel":
            std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, std, leaf.shape), leaf.dtype)
        # Positive biases keep the ReLU units, and the two hidden SE units, alive.
        low = 1.0 if path[-2].key == "fc1" else 0.05
        return jnp.asarray(rng.uniform(low, low + 0.2, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(make, abstract_params(model, shape))


def apply_abstract(model, shape, method_interceptor=None):
    params = abstract_params(model, shape)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)

    def run(p, x):
        return model.apply({"params": p}, x, mutable=[SSPCAB_LOSS_COLLECTION])

    if method_interceptor is None:
        return params, jax.eval_shape(run, params, x)
    with nn.intercept_methods(method_interceptor):
        return params, jax.eval_shape(run, params, x)


def run_quickly(fn, *args):
    """Jit and run ``fn`` with LLVM optimisation off: XLA CPU compile time dominates these tests."""
    compiled = jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})
    return compiled(*args)


# --------------------------------------------------------------------------- Table 1 placements


@pytest.mark.parametrize("positions", SUBSETS, ids=subset_id)
def test_table1_placements_shapes_and_sown_losses(positions):
    model = ConvAutoencoder(sspcab_positions=positions)
    params, (y, mutated) = apply_abstract(model, (2, 32, 32, 1))
    assert y.shape == (2, 32, 32, 1)
    assert count_sown_losses(mutated) == len(positions)
    for i, p in enumerate(POSITIONS):  # the block replaces the conv at its position
        assert (f"sspcab_{p}" in params) == (p in positions)
        assert (f"dec_conv{i}" in params) == (p not in positions)


@pytest.fixture(scope="module")
def computed():
    """One jitted call: gradients for the eight subsets and a 3D model; f32 / bf16 forwards."""
    rng = np.random.default_rng(0)
    x2 = jnp.asarray(rng.uniform(size=(2, 32, 32, 1)), jnp.float32)
    clip = jnp.asarray(rng.uniform(size=(2, 4, 32, 32, 3)), jnp.float32)
    models = {subset_id(s): ConvAutoencoder(sspcab_positions=s) for s in SUBSETS}
    models["3d"] = ConvAutoencoder(
        channels=3,
        spatial_dims=3,
        sspcab_positions=("early", "late"),
        sspcab_dilation={"early": 1, "late": 2},
    )
    inputs = {k: (clip if k == "3d" else x2) for k in models}
    params = {k: host_params(m, inputs[k].shape, seed=i) for i, (k, m) in enumerate(models.items())}

    def run(params):
        grads, sown = {}, {}
        for key, model in models.items():
            x = inputs[key]

            def loss(p, model=model, x=x):
                y, mutated = model.apply({"params": p}, x, mutable=[SSPCAB_LOSS_COLLECTION])
                ssl = self_supervised_loss(mutated)
                return jnp.mean(jnp.square(y - x)) + 0.1 * ssl, ssl

            grads[key], sown[key] = jax.grad(loss, has_aux=True)(params[key])
        full = models["early+middle+late"]
        p = params["early+middle+late"]
        f32 = full.apply({"params": p}, x2)
        bf16 = full.clone(dtype=jnp.bfloat16).apply({"params": p}, x2)
        return grads, sown, f32, bf16

    return jax.device_get(run_quickly(run, params))


@pytest.mark.parametrize("key", [*map(subset_id, SUBSETS), "3d"])
def test_gradients_reach_every_parameter(computed, key):
    grads, sown, _, _ = computed
    flat = jax.tree_util.tree_flatten_with_path(grads[key])[0]
    dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(g != 0)]
    assert not dead, f"parameters without gradient: {dead}"
    assert (float(sown[key]) > 0) == (key != "none")


def test_bfloat16_is_finite_and_close_to_float32(computed):
    _, _, f32, bf16 = computed
    assert bf16.dtype == jnp.bfloat16
    bf16 = np.asarray(bf16, np.float32)
    assert np.all(np.isfinite(bf16))
    scale = np.max(np.abs(f32))
    assert np.max(np.abs(bf16 - f32)) / scale < 0.05


# --------------------------------------------------------------------------- geometry


def _record_inputs(records):
    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            records[context.module.name] = (args[0].shape, context.module)
        return next_fun(*args, **kwargs)

    return interceptor


def test_default_ocae_geometry():
    # OCAE-style: 64x64x1 crop -> latent 8x8x16; decoder 16 / 32 / 32 -> 1 channel.
    records = {}
    params, (y, _) = apply_abstract(ConvAutoencoder(), (3, 64, 64, 1), _record_inputs(records))
    assert y.shape == (3, 64, 64, 1)
    assert records["dec_conv0"][0] == (3, 8, 8, 16)
    assert records["dec_conv2"][0] == (3, 32, 32, 32)  # 'late': the penultimate conv
    assert records["out_conv"][0] == (3, 64, 64, 32)
    assert [params[f"enc_conv{i}"]["kernel"].shape[-1] for i in range(3)] == [32, 32, 16]


def test_block_keeps_its_input_width():
    params = abstract_params(ConvAutoencoder(sspcab_positions=("middle",)), (1, 32, 32, 1))
    # 'middle' replaces the 16 -> 32 conv with a 16 -> 16 block; the next conv takes 16 inputs.
    assert params["sspcab_middle"]["masked_conv"]["kernel"].shape[-2:] == (16, 16)
    assert params["dec_conv2"]["kernel"].shape == (3, 3, 16, 32)
    params = abstract_params(ConvAutoencoder(sspcab_positions=("middle", "late")), (1, 32, 32, 1))
    assert params["out_conv"]["kernel"].shape == (3, 3, 16, 1)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, {"early": 1, "middle": 1, "late": 1}),
        ({"masked_centre": 3}, {"early": 2, "middle": 2, "late": 2}),
        ({"sspcab_dilation": {"early": 3, "middle": 2}}, {"early": 3, "middle": 2, "late": 1}),
        (
            {"sspcab_dilation": (("early", 2),), "masked_centre": 3},
            {"early": 3, "middle": 2, "late": 2},
        ),
    ],
)
def test_masked_centre_and_dilation(kwargs, expected):
    model = ConvAutoencoder(sspcab_positions=POSITIONS, **kwargs)
    records = {}
    apply_abstract(model, (1, 64, 64, 1), _record_inputs(records))
    blocks = {n[len("sspcab_") :]: m for n, (_, m) in records.items() if isinstance(m, SSPCAB)}
    assert {p: m.dilation for p, m in blocks.items()} == expected
    gap = kwargs.get("sspcab_dilation", 1)
    centre = kwargs.get("masked_centre", 1)
    for position, block in blocks.items():
        d = gap if isinstance(gap, int) else dict(gap).get(position, 1)
        offsets = visible_offsets(block.kernel_size, block.dilation)
        hidden = min(o for o in offsets if o > 0) * 2 - 1  # width of the hidden centre band
        assert hidden == centre + 2 * d  # M (m x m) plus a gap d on each side


def test_3d_clips_use_3d_blocks():
    model = ConvAutoencoder(channels=3, spatial_dims=3, sspcab_positions=("late",))
    params, (y, mutated) = apply_abstract(model, (2, 4, 16, 16, 3))
    assert y.shape == (2, 4, 16, 16, 3)
    assert count_sown_losses(mutated) == 1
    assert params["sspcab_late"]["masked_conv"]["kernel"].shape[0] == 8  # eight corners
    assert params["enc_conv0"]["kernel"].shape == (3, 3, 3, 3, 32)


def test_tabulate_summary_prints():
    model = ConvAutoencoder(sspcab_positions=("late",))
    table = nn.tabulate(model, jax.random.key(0), console_kwargs={"width": 200})(
        jnp.zeros((1, 32, 32, 1))
    )
    assert "sspcab_late" in table and "Total Parameters" in table


# --------------------------------------------------------------------------- scoring


def test_reconstruction_error_map_and_score():
    rng = np.random.default_rng(0)
    recon = rng.normal(size=(2, 8, 6, 3)).astype(np.float32)
    target = rng.normal(size=(2, 8, 6, 3)).astype(np.float32)
    ref = ((recon - target) ** 2).mean(-1)
    np.testing.assert_allclose(reconstruction_error_map(recon, target), ref, rtol=1e-6)
    np.testing.assert_allclose(reconstruction_score(recon, target), ref.mean((1, 2)), rtol=1e-6)
    clip = rng.normal(size=(2, 3, 8, 8, 1)).astype(np.float32)
    assert reconstruction_error_map(clip, 0 * clip).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="shapes differ"):
        reconstruction_error_map(recon, target[..., :1])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({}, (1, 32, 32, 3), "channels"),
        ({}, (1, 36, 32, 1), "multiples of 8"),
        ({"sspcab_positions": ("bottleneck",)}, (1, 32, 32, 1), "sspcab_positions"),
        ({"sspcab_positions": ("late", "late")}, (1, 32, 32, 1), "sspcab_positions"),
        (
            {"sspcab_positions": ("late",), "sspcab_dilation": {"end": 1}},
            (1, 32, 32, 1),
            "sspcab_dilation",
        ),
        ({"masked_centre": 2}, (1, 32, 32, 1), "masked_centre"),
        ({"decoder_widths": (16, 32)}, (1, 32, 32, 1), "decoder_widths"),
        ({"spatial_dims": 3}, (1, 32, 32, 1), "rank-5"),
        ({"upsampling": "cubic"}, (1, 32, 32, 1), "upsampling"),
        ({"sspcab_positions": ("early",), "sspcab_dilation": 2}, (1, 16, 16, 1), "padding"),
    ],
)
def test_bad_configuration_raises(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        abstract_params(ConvAutoencoder(**kwargs), shape)
