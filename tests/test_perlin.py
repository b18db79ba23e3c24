import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.synthesis import perlin_mask, perlin_noise, random_perlin_noise, rotate


def _noise_batch(n: int, shape=(32, 32)) -> np.ndarray:
    keys = jax.random.split(jax.random.key(0), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: random_perlin_noise(k, shape)))(keys))


def test_noise_range_and_mean():
    noise = _noise_batch(256)
    assert np.isfinite(noise).all()
    assert np.abs(noise).max() <= 1.0 + 1e-5  # sqrt(2) * 2D Perlin bound sqrt(1/2)
    assert abs(noise.mean()) < 0.05
    assert noise.std() > 0.1


def test_resolution_one_is_smooth_and_zero_on_lattice():
    noise = np.asarray(perlin_noise(jax.random.key(3), (64, 64), (1, 1)))
    assert noise[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert np.abs(np.diff(noise, axis=0)).max() < 0.06
    assert np.abs(np.diff(noise, axis=1)).max() < 0.06
    rough = np.asarray(perlin_noise(jax.random.key(3), (64, 64), (32, 32)))
    assert np.abs(np.diff(rough, axis=1)).mean() > 5 * np.abs(np.diff(noise, axis=1)).mean()
    # Lattice points (every 2 pixels at res 32 over 64) are zeros.
    np.testing.assert_allclose(rough[::2, ::2], 0.0, atol=1e-6)


def test_non_power_of_two_shape():
    noise = perlin_noise(jax.random.key(0), (48, 80), (4, 32))
    assert noise.shape == (48, 80)
    assert np.isfinite(np.asarray(noise)).all() and float(jnp.abs(noise).max()) <= 1.0 + 1e-5
    mask = perlin_mask(jax.random.key(1), (48, 80))
    assert mask.shape == (48, 80, 1)


def test_mask_binary_keyed_and_deterministic():
    key = jax.random.key(7)
    a, b = perlin_mask(key, (32, 32)), perlin_mask(key, (32, 32))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(np.asarray(a))) <= {0.0, 1.0}
    masks = [np.asarray(perlin_mask(jax.random.key(i), (32, 32))) for i in range(8)]
    assert len({m.tobytes() for m in masks}) > 1


def test_compiles_once_for_all_keys_and_resolutions():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def fn(key):
        return perlin_mask(key, (32, 32))

    for i in range(5):
        fn(jax.random.key(i))


def test_rotate_90_matches_rot90():
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    out = np.asarray(rotate(jnp.asarray(image), 90.0))
    np.testing.assert_allclose(out[1:-1, 1:-1], np.rot90(image)[1:-1, 1:-1], atol=1e-5)
    back = np.asarray(rotate(jnp.asarray(image), -90.0))
    np.testing.assert_allclose(back[1:-1, 1:-1], np.rot90(image, -1)[1:-1, 1:-1], atol=1e-5)


def test_rotate_fills_zero_outside():
    out = np.asarray(rotate(jnp.ones((32, 32, 1)), 45.0))
    assert out[0, 0, 0] == 0.0 and out[16, 16, 0] == pytest.approx(1.0)
