"""DRAEM synthesis against the official rules (``data_loader.py``, ``perlin.py``).

Statistics use 2,400 draws and 4-sigma binomial / uniform tolerances.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sspcab_jax.synthesis import (
    SynthesisConfig,
    blend,
    perlin_mask,
    random_perlin_noise,
    random_resolution,
    rotate,
    synthesize,
)

N = 2400
SIZE = 16


def binomial_ok(hits: int, n: int, p: float) -> bool:
    return abs(hits / n - p) <= 4 * np.sqrt(p * (1 - p) / n)


def test_blend_is_the_official_formula():
    rng = np.random.default_rng(0)
    image = rng.random((SIZE, SIZE, 3), dtype=np.float32)
    texture = rng.random((SIZE, SIZE, 3), dtype=np.float32)
    mask = (rng.random((SIZE, SIZE, 1)) > 0.5).astype(np.float32)
    for beta in (np.float32(0.0), np.float32(0.35), np.float32(0.8)):
        official = image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask
        got = np.asarray(blend(image, texture, mask, 1 - beta))
        np.testing.assert_allclose(got, official, rtol=0, atol=1e-7)
        # Outside the mask the image is untouched, bit for bit.
        np.testing.assert_array_equal(got[mask[..., 0] == 0], image[mask[..., 0] == 0])


def _draws(config: SynthesisConfig, image_value: float = 0.25) -> dict[str, np.ndarray]:
    # One constant source texture of 1 and no augmenter, so augmented = image + opacity * 0.75.
    images = jnp.full((N, SIZE, SIZE, 3), image_value)
    sources = jnp.ones((1, SIZE, SIZE, 3))
    fn = jax.jit(lambda k: synthesize(k, images, sources, config=config))
    return jax.tree_util.tree_map(np.asarray, fn(jax.random.key(0)))


FULL_MASK = SynthesisConfig(num_augmenters=0, perlin_threshold=-2.0, rotate_prob=0.0)


def test_opacity_is_uniform_on_the_official_range():
    out = _draws(dataclasses.replace(FULL_MASK, clean_prob=0.0))
    assert out["has_anomaly"].all() and (out["mask"] == 1).all()
    opacity = (out["augmented"][:, 0, 0, 0] - 0.25) / 0.75
    # Every pixel of a sample gets the same opacity.
    np.testing.assert_allclose(
        out["augmented"], out["augmented"][:, :1, :1, :1] + 0 * out["augmented"], atol=1e-6
    )
    assert opacity.min() > 0.2 - 1e-6 and opacity.max() <= 1.0 + 1e-6
    # U(0.2, 1]: mean 0.6, sd 0.8 / sqrt(12); each fifth of the range holds 1/5 of the draws.
    assert abs(opacity.mean() - 0.6) <= 4 * 0.8 / np.sqrt(12 * N)
    counts = np.histogram(opacity, bins=5, range=(0.2, 1.0))[0]
    assert all(binomial_ok(c, N, 0.2) for c in counts), counts


def test_clean_probability():
    for clean_prob in (0.5, 0.3):
        out = _draws(dataclasses.replace(FULL_MASK, clean_prob=clean_prob))
        clean = out["has_anomaly"] == 0
        assert binomial_ok(int(clean.sum()), N, clean_prob), (clean_prob, clean.mean())
        # Clean samples are the image itself with an empty mask.
        np.testing.assert_array_equal(out["augmented"][clean], 0.25)
        assert (out["mask"][clean] == 0).all()


def test_rotation_probability():
    # A ramp image changes under any rotation but the identity.
    ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, SIZE)[None, :, None], (SIZE, SIZE, 3))
    images = jnp.broadcast_to(ramp, (N, SIZE, SIZE, 3))
    for config in (SynthesisConfig(), dataclasses.replace(FULL_MASK, rotate_prob=0.6)):
        fn = jax.jit(
            lambda k, c=config: synthesize(k, images, jnp.ones((1, SIZE, SIZE, 3)), config=c)
        )
        rotated = (
            np.abs(np.asarray(fn(jax.random.key(1))["image"]) - np.asarray(ramp)).max(
                axis=(1, 2, 3)
            )
            > 1e-4
        )
        assert binomial_ok(int(rotated.sum()), N, config.rotate_prob), (
            config.rotate_prob,
            rotated.mean(),
        )


def test_perlin_resolutions_are_powers_of_two_up_to_32_per_axis():
    res = np.asarray(jax.vmap(random_resolution)(jax.random.split(jax.random.key(2), N)))
    assert set(np.unique(res)) == {1, 2, 4, 8, 16, 32}
    for axis in (0, 1):
        for value in (1, 2, 4, 8, 16, 32):
            assert binomial_ok(int((res[:, axis] == value).sum()), N, 1 / 6)
    # The two axes are drawn independently: P(equal) = 1/6.
    assert binomial_ok(int((res[:, 0] == res[:, 1]).sum()), N, 1 / 6)


def test_mask_threshold_is_one_half():
    assert SynthesisConfig().perlin_threshold == 0.5
    key = jax.random.key(3)
    # Rebuild the rotated noise from the public pieces with perlin_mask's key split.
    k_noise, k_angle = jax.random.split(key)
    noise = random_perlin_noise(k_noise, (64, 64))
    angle = jax.random.uniform(k_angle, (), minval=-90.0, maxval=90.0)
    rotated = np.asarray(rotate(noise[..., None], angle))
    np.testing.assert_array_equal(np.asarray(perlin_mask(key, (64, 64))), rotated > 0.5)
    assert 0 < (rotated > 0.5).mean() < (rotated > 0.4).mean()  # the threshold matters here
