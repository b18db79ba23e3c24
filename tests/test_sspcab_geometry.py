"""SSPCAB's masked convolution: which inputs each output sees, output shapes, formulations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax import SSPCAB, SSPCAB3D, MaskedConv
from sspcab_jax.layers import corner_visibility, visible_offsets

# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "k,d,expected",
    [
        (1, 0, (-1, 1)),
        (1, 1, (-2, 2)),
        (1, 2, (-3, 3)),
        (2, 1, (-3, -2, 2, 3)),
        (3, 1, (-4, -3, -2, 2, 3, 4)),
        (3, 2, (-5, -4, -3, 3, 4, 5)),
    ],
)
def test_visible_offsets_match_reference_table(k, d, expected):
    # Offsets per (k, d) worked out from the slicing of sspcab_torch.py.
    assert visible_offsets(k, d) == expected


def _expected_pattern(shape, centre, k, d):
    offsets = visible_offsets(k, d)
    expected = np.zeros(shape, dtype=bool)
    for delta in itertools.product(offsets, repeat=len(shape)):
        pos = tuple(c + r for c, r in zip(centre, delta, strict=True))
        if all(0 <= p < s for p, s in zip(pos, shape, strict=True)):
            expected[pos] = True
    return expected


def _input_grad_pattern(apply, x, centre):
    def pixel(x):
        return jnp.sum(apply(x)[(0,) + centre])

    g = jax.grad(pixel)(x)
    return np.asarray(jnp.any(g[0] != 0, axis=-1))


@pytest.mark.parametrize("k,d", [(1, 0), (1, 1), (2, 1), (3, 2), (2, 0)])
@pytest.mark.parametrize("formulation", ["auto", "concat", "crops"])
def test_masked_conv_sees_exactly_the_corner_blocks_2d(k, d, formulation):
    size = 2 * (2 * k + 2 * d + 1) + 1
    x = jax.random.normal(jax.random.key(0), (1, size, size + 2, 4))
    conv = MaskedConv(k, d, activation="none", formulation=formulation)
    variables = conv.init(jax.random.key(1), x)
    for centre in [(size // 2, size // 2 + 1), (1, 2), (size - 1, 0)]:
        pattern = _input_grad_pattern(lambda x: conv.apply(variables, x), x, centre)
        np.testing.assert_array_equal(pattern, _expected_pattern(x.shape[1:3], centre, k, d))


@pytest.mark.parametrize("k,d", [(1, 1), (2, 0), (1, 2)])
def test_masked_conv_sees_exactly_the_corner_blocks_3d(k, d):
    size = 2 * k + 2 * d + 3
    x = jax.random.normal(jax.random.key(0), (1, size, size, size + 1, 2))
    conv = MaskedConv(k, d, spatial_dims=3, activation="none")
    variables = conv.init(jax.random.key(1), x)
    assert variables["params"]["kernel"].shape == (8, k, k, k, 2, 2)
    centre = (size // 2, size // 2, size // 2)
    pattern = _input_grad_pattern(lambda x: conv.apply(variables, x), x, centre)
    np.testing.assert_array_equal(pattern, _expected_pattern(x.shape[1:4], centre, k, d))


def test_block_with_constant_gate_keeps_the_geometry():
    k, d = 1, 1
    x = jax.random.normal(jax.random.key(0), (1, 11, 11, 8))
    block = SSPCAB(k, d, activation="none")
    params = block.init(jax.random.key(1), x)["params"]
    # Zeroing the excitation kernel makes the gate sigmoid(bias): independent of the input.
    params["se"]["fc2"]["kernel"] = jnp.zeros_like(params["se"]["fc2"]["kernel"])
    pattern = _input_grad_pattern(lambda x: block.apply({"params": params}, x), x, (5, 5))
    np.testing.assert_array_equal(pattern, _expected_pattern((11, 11), (5, 5), k, d))


def test_arbitrary_visibility_pattern_is_respected():
    k, d = 1, 1
    visibility = np.zeros((5, 5), dtype=bool)
    visibility[0, 2] = visibility[4, 2] = visibility[2, 0] = True  # a "cross" pattern
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 3))
    conv = MaskedConv(k, d, visibility=visibility, activation="none")
    variables = conv.init(jax.random.key(1), x)
    pattern = _input_grad_pattern(lambda x: conv.apply(variables, x), x, (4, 4))
    expected = np.zeros((9, 9), dtype=bool)
    expected[2:7, 2:7] = visibility
    np.testing.assert_array_equal(pattern, expected)


def test_corner_visibility_through_masked_formulation_matches_reference():
    k, d, channels = 2, 1, 3
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 7, channels)).astype(np.float32)
    visibility = corner_visibility(k, d)
    conv = MaskedConv(k, d, visibility=visibility, activation="none")
    params = conv.init(jax.random.key(0), x)["params"]
    y = np.asarray(conv.apply({"params": params}, x))
    # Reference: explicit loop over visible taps of a zero-padded input.
    size = visibility.shape[0]
    half = size // 2
    xp = np.pad(x, ((0, 0), (half, half), (half, half), (0, 0)))
    kernel = np.asarray(params["kernel"])
    ref = np.zeros_like(x) + np.asarray(params["bias"])
    for a, b in zip(*np.nonzero(visibility), strict=True):
        ref += np.einsum("nhwc,co->nhwo", xp[:, a : a + 6, b : b + 7], kernel[a, b])
    np.testing.assert_allclose(y, ref, atol=1e-5)


# --------------------------------------------------------------------------- shapes, formulations


@pytest.mark.parametrize("k,d", [(1, 1), (2, 1), (3, 0), (1, 3)])
@pytest.mark.parametrize("hw", [(7, 7), (8, 6), (2, 3)])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_output_shape_equals_input_shape_2d(k, d, hw, padding):
    x = jnp.ones((2, *hw, 8))
    block = SSPCAB(k, d, padding=padding)
    variables = block.init(jax.random.key(0), x)
    assert block.apply(variables, x).shape == x.shape


@pytest.mark.parametrize("thw", [(3, 4, 5), (2, 2, 2)])
def test_output_shape_equals_input_shape_3d(thw):
    x = jnp.ones((1, *thw, 8))
    block = SSPCAB3D(2, 1)
    variables = block.init(jax.random.key(0), x)
    assert block.apply(variables, x).shape == x.shape


@pytest.mark.parametrize("k,d", [(1, 0), (1, 2), (2, 1), (3, 1)])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_formulations_agree(k, d, spatial_dims):
    shape = (2, 5, 6, 4) if spatial_dims == 2 else (2, 3, 5, 4, 4)
    x = jax.random.normal(jax.random.key(0), shape)
    forms = ["concat", "crops"] + (["dilated"] if k == 1 else [])
    params = MaskedConv(k, d, spatial_dims=spatial_dims).init(jax.random.key(1), x)
    outputs = {
        f: MaskedConv(k, d, spatial_dims=spatial_dims, formulation=f).apply(params, x)
        for f in forms
    }
    for f in forms[1:]:
        np.testing.assert_allclose(outputs[f], outputs[forms[0]], atol=1e-5)


def test_auto_formulation_choice():
    assert MaskedConv(1, 1).resolved_formulation() == "dilated"
    assert MaskedConv(2, 1).resolved_formulation() == "concat"
    assert MaskedConv(1, 1, activation="per_branch").resolved_formulation() == "crops"
    assert MaskedConv(1, 1, visibility=corner_visibility(1, 1)).resolved_formulation() == "masked"
