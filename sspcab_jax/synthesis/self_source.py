"""Anomaly sources cut from the image itself, re-arranged: rotated, zoomed and shifted.

DRAEM's sources are other textures, so its discriminator learns "foreign colour or grain here".
A defect that re-arranges the object's own material (a swirl, a fold, a patch turned the wrong
way, a smeared area) keeps its colours and grain statistics, and a discriminator that never saw
such a sample in training does not flag it. A self source is the clean image resampled by a
random similarity transform; pasted through the Perlin mask it gives a region of the right
material with the wrong orientation, scale or phase. Sampling reflects at the borders, so the
source has no zero-filled corners (they would be a colour cue again).
"""

import jax
import jax.numpy as jnp

from sspcab_jax.synthesis import geometry

# Zoom factors are log-uniform in [1 / MAX_ZOOM, MAX_ZOOM]: finer and coarser grain alike.
MAX_ZOOM = 2.0


def reflect_coordinates(positions: jax.Array, size: int) -> jax.Array:
    """Folds fractional positions into ``[0, size - 1]`` by mirroring at the borders.

    Args:
      positions: [...] fractional pixel positions along one axis, any range.
      size: number of pixels along that axis.

    Returns:
      [...] positions in ``[0, size - 1]``; ``-1`` maps to ``1`` and ``size`` to ``size - 2``.
    """
    if size == 1:
        return jnp.zeros_like(positions)
    period = 2.0 * (size - 1)
    folded = jnp.mod(positions, period)
    return (size - 1) - jnp.abs(folded - (size - 1))


def similarity_resample(
    image: jax.Array,
    degrees: jax.Array | float,
    zoom: jax.Array | float,
    shift: jax.Array,
) -> jax.Array:
    """Resamples an image by rotation, zoom and shift about its centre, mirrored at borders.

    Output pixel ``p`` reads the input at ``c + R(-degrees) (p - c) / zoom + shift`` (bilinear),
    so ``zoom > 1`` magnifies and positive angles turn the picture counter-clockwise as
    displayed, as :func:`~sspcab_jax.synthesis.geometry.rotate` does.

    Args:
      image: [H, W, C] image.
      degrees: scalar rotation in degrees (may be traced).
      zoom: scalar magnification, > 0 (may be traced).
      shift: [2] (row, column) offset in pixels of the source point.

    Returns:
      [H, W, C] resampled image.
    """
    height, width = image.shape[:2]
    rows, cols = geometry.rotation_source_points(height, width, degrees, zoom)
    src_rows, src_cols = rows + shift[0], cols + shift[1]
    return geometry.bilinear_sample(
        image, reflect_coordinates(src_rows, height), reflect_coordinates(src_cols, width)
    )


def self_texture(key: jax.Array, image: jax.Array) -> jax.Array:
    """A source made of the image itself: random angle, zoom and shift (no colour change).

    Args:
      key: PRNG key.
      image: [H, W, 3] clean image in [0, 1].

    Returns:
      [H, W, 3] the image rotated by U(-180, 180) degrees, zoomed by a log-uniform factor in
      [1/2, 2] and shifted by up to half its size on each axis.
    """
    k_angle, k_zoom, k_shift = jax.random.split(key, 3)
    height, width = image.shape[:2]
    degrees = jax.random.uniform(k_angle, (), minval=-180.0, maxval=180.0)
    log_zoom = jax.random.uniform(k_zoom, (), minval=-jnp.log(MAX_ZOOM), maxval=jnp.log(MAX_ZOOM))
    half = jnp.array([height, width], jnp.float32) / 2.0
    shift = jax.random.uniform(k_shift, (2,), minval=-half, maxval=half)
    return similarity_resample(image, degrees, jnp.exp(log_zoom), shift)
