"""Self sources: the clean image re-arranged, checked against NumPy / SciPy resampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from sspcab_jax.synthesis import SynthesisConfig, self_source, synthesize

RNG = np.random.default_rng(3)
IMAGE = RNG.random((12, 9, 3)).astype(np.float32)


def test_reflect_coordinates_mirror_at_pixel_centres_like_numpy_pad():
    # np.pad(mode='reflect') mirrors about the edge pixel without repeating it: index -k reads k.
    size = 7
    padded = np.pad(np.arange(size), 3 * size, mode="reflect")
    positions = np.arange(-3 * size, 4 * size)
    got = self_source.reflect_coordinates(jnp.asarray(positions, jnp.float32), size)
    np.testing.assert_array_equal(np.asarray(got), padded.astype(np.float32))


@pytest.mark.parametrize(
    "degrees,zoom,shift",
    [(0.0, 1.0, (0.0, 0.0)), (37.0, 1.6, (2.5, -4.0)), (-140.0, 0.55, (-6.0, 3.25))],
)
def test_similarity_resample_matches_scipy_affine_transform_with_mirror_borders(
    degrees, zoom, shift
):
    theta = np.deg2rad(degrees)
    # Output (row, col) reads input c + A (p - c) + shift, A = R(-theta) / zoom in (row, col).
    matrix = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]) / zoom
    centre = (np.array(IMAGE.shape[:2]) - 1) / 2.0
    offset = centre - matrix @ centre + np.array(shift)
    want = np.stack(
        [
            ndimage.affine_transform(IMAGE[..., c], matrix, offset=offset, order=1, mode="mirror")
            for c in range(3)
        ],
        axis=-1,
    )
    got = self_source.similarity_resample(IMAGE, degrees, zoom, jnp.asarray(shift))
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


def test_quarter_turn_without_zoom_or_shift_is_rot90():
    square = RNG.random((8, 8, 3)).astype(np.float32)
    got = self_source.similarity_resample(square, 90.0, 1.0, jnp.zeros(2))
    np.testing.assert_allclose(np.asarray(got), np.rot90(square), atol=1e-5)


def test_self_texture_keeps_the_image_colours_and_has_no_filled_corners():
    flat = np.full((16, 16, 3), 0.3, np.float32)
    flat[..., 1] = 0.8
    for seed in range(8):
        texture = np.asarray(self_source.self_texture(jax.random.key(seed), flat))
        np.testing.assert_allclose(texture, flat, atol=1e-6)  # no zero-filled corners
    varied = np.asarray(self_source.self_texture(jax.random.key(0), IMAGE))
    assert varied.min() >= IMAGE.min() - 1e-6 and varied.max() <= IMAGE.max() + 1e-6
    assert not np.allclose(varied, IMAGE)


def _run(config, images, sources):
    return jax.jit(lambda k: synthesize(k, images, sources, config=config))(jax.random.key(7))


def test_self_source_prob_pastes_the_image_itself_in_that_share_of_samples():
    # Each image is one flat colour, the pool is flat 0.2, opacity 1: inside
    # the mask a self-sourced sample shows the image's own colour, a pool one shows 0.2.
    prob = 0.4
    config = SynthesisConfig(
        clean_prob=0.0,
        opacity_range=(1.0, 1.0),
        rotate_prob=0.0,
        num_augmenters=0,
        self_source_prob=prob,
    )
    colours = np.linspace(0.5, 0.9, 200, dtype=np.float32)
    images = np.broadcast_to(colours[:, None, None, None], (200, 32, 32, 3)).copy()
    sources = jnp.full((3, 32, 32, 3), 0.2)
    out = _run(config, jnp.asarray(images), sources)
    augmented = np.asarray(out["augmented"])[..., 0]
    inside = np.asarray(out["mask"])[..., 0] > 0
    picked = [
        np.allclose(a[m], c, atol=1e-6)
        for a, m, c in zip(augmented, inside, colours, strict=True)
        if m.any()
    ]
    pool = [np.allclose(a[m], 0.2) for a, m in zip(augmented, inside, strict=True) if m.any()]
    assert len(picked) > 150
    assert all(p != q for p, q in zip(picked, pool, strict=True))  # one source or the other
    assert abs(np.mean(picked) - prob) < 0.1, np.mean(picked)


def test_self_source_option_leaves_every_other_draw_unchanged():
    # Enabled with a probability that is never hit, the samples equal the official synthesis
    # bit for bit: the option reads a key of its own.
    images = jnp.asarray(RNG.random((6, 16, 16, 3)), jnp.float32)
    sources = jnp.asarray(RNG.random((5, 16, 16, 3)), jnp.float32)
    official = _run(SynthesisConfig(), images, sources)
    never = _run(SynthesisConfig(self_source_prob=1e-12), images, sources)
    for name in official:
        np.testing.assert_array_equal(np.asarray(never[name]), np.asarray(official[name]))


def test_self_texture_zooms_by_a_log_uniform_factor_between_half_and_two():
    # A plane wave of 1/8 cycles per pixel: turned, shifted and mirrored it keeps its radial
    # frequency, so the spectrum's peak gives the zoom (finer grain: higher frequency).
    size, frequency = 128, 1 / 8
    yy, xx = np.mgrid[:size, :size]
    wave = 0.5 + 0.5 * np.cos(2 * np.pi * frequency * (0.6 * yy + 0.8 * xx))
    image = np.repeat(wave[..., None], 3, axis=-1).astype(np.float32)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radial = np.hypot(fy, fx)
    window = np.outer(np.hanning(size), np.hanning(size))
    zooms = []
    for seed in range(32):
        texture = np.asarray(self_source.self_texture(jax.random.key(seed), image))[..., 0]
        spectrum = np.abs(np.fft.fft2((texture - texture.mean()) * window))
        zooms.append(frequency / radial.flat[spectrum.argmax()])
    log_zooms = np.log(zooms)  # up to the spectrum's 1/128 resolution (about 12 % here)
    assert np.all(np.abs(log_zooms) < np.log(2.0 * 1.15)), np.round(zooms, 2)
    assert (log_zooms > np.log(1.3)).sum() >= 4 and (log_zooms < -np.log(1.3)).sum() >= 4
    assert np.abs(log_zooms).min() < np.log(1.2)  # near 1 too: uniform, not only the extremes
