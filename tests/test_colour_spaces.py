"""imgaug's MultiplyAndAddToBrightness in JAX, against OpenCV values and NumPy tables."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.synthesis import augment, colour_spaces, draem

REFERENCE = pathlib.Path(__file__).parent / "data" / "opencv_reference.npz"
# Largest level difference to OpenCV over the stored colours and draws: (max, 99th percentile).
BRIGHTNESS_TOLERANCE = {
    "YCrCb": (2, 2),
    "HSV": (1, 1),
    "HLS": (0, 0),
    "Lab": (26, 3),
    "Luv": (255, 11),
    "YUV": (3, 2),
}
FORWARD_TOLERANCE = {"YCrCb": 1, "HSV": 0, "HLS": 0, "Lab": 2, "Luv": 1, "YUV": 1}


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE)


@pytest.mark.parametrize("space", colour_spaces.SPACES)
def test_forward_conversion_matches_opencv(ref, space):
    got = np.asarray(colour_spaces.to_space(jnp.asarray(ref["colours"], jnp.float32), space))
    diff = np.abs(got - ref[f"to_{space}"].astype(np.float64))
    assert diff.max() <= FORWARD_TOLERANCE[space]


@pytest.mark.parametrize("space", colour_spaces.SPACES)
def test_brightness_step_matches_opencv(ref, space):
    colours = jnp.asarray(ref["colours"], jnp.float32)
    diffs = []
    for (mul, add, mul_first), expected in zip(
        ref["brightness_params"], ref[f"brightness_{space}"], strict=True
    ):
        got = colour_spaces.brightness_in_space(
            colours, space, jnp.float32(mul), jnp.float32(add), bool(mul_first)
        )
        diffs.append(np.abs(np.asarray(got) - expected.astype(np.float64)))
    diffs = np.stack(diffs)
    worst, p99 = BRIGHTNESS_TOLERANCE[space]
    assert diffs.max() <= worst and np.percentile(diffs, 99) <= p99


def test_multiply_add_tables_and_order():
    levels = np.arange(256, dtype=np.float32)
    mul, add = np.float32(1.13), 17.0
    mul_table = np.clip(levels * mul, 0, 255).astype(np.uint8).astype(np.float32)
    add_table = np.clip(levels + add, 0, 255)
    got_mul_first = colour_spaces.multiply_add_levels(
        jnp.asarray(levels), jnp.float32(mul), jnp.float32(add), True
    )
    got_add_first = colour_spaces.multiply_add_levels(
        jnp.asarray(levels), jnp.float32(mul), jnp.float32(add), False
    )
    np.testing.assert_array_equal(got_mul_first, add_table[mul_table.astype(int)])
    np.testing.assert_array_equal(got_add_first, mul_table[add_table.astype(int)])
    assert not np.array_equal(got_mul_first, got_add_first)


def test_draw_statistics():
    keys = jax.random.split(jax.random.key(0), 6000)
    space, mul, add, mul_first = jax.vmap(colour_spaces.draw_brightness_params)(keys)
    counts = np.bincount(np.asarray(space), minlength=6) / 6000
    np.testing.assert_allclose(counts, 1 / 6, atol=0.02)
    assert abs(float(mul_first.mean()) - 0.5) < 0.03
    assert 0.8 <= float(mul.min()) and float(mul.max()) <= 1.2
    add = np.asarray(add)
    assert np.array_equal(add, np.round(add)) and add.min() == -30 and add.max() == 30
    # Rounding U(-30, 30): the end values get half the mass of the others.
    assert 0.3 < (add == 30).mean() / (add == 0).mean() < 0.7


def test_official_brightness_reverses_channels_like_draem():
    image = jax.random.uniform(jax.random.key(1), (8, 8, 3))
    key = jax.random.key(2)
    space, mul, add, mul_first = colour_spaces.draw_brightness_params(key)
    levels = jnp.floor(image * 255 + 0.5)
    expected = colour_spaces.brightness_levels(levels[..., ::-1], space, mul, add, mul_first)
    got = colour_spaces.brightness_official(key, image)
    np.testing.assert_allclose(got, expected[..., ::-1] / 255.0, atol=1e-6)


def test_jit_vmap_and_config():
    images = jax.random.uniform(jax.random.key(3), (5, 8, 8, 3))
    keys = jax.random.split(jax.random.key(4), 5)
    out = jax.jit(jax.vmap(colour_spaces.brightness_official))(keys, images)
    assert out.shape == images.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert not np.allclose(out, images)
    assert augment.augmenter_list("official")[1] is colour_spaces.brightness_official
    assert augment.augmenter_list("ycrcb") == augment.AUGMENTERS
    with pytest.raises(ValueError, match="synthesis.brightness"):
        draem.SynthesisConfig(brightness="hsv")
    config = draem.SynthesisConfig(brightness="official", num_augmenters=10)
    batch = draem.synthesize(jax.random.key(5), images, images, config=config)
    assert batch["augmented"].shape == images.shape
