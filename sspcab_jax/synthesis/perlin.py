"""Keyed 2D Perlin noise and DRAEM Perlin masks in jnp (DRAEM's `perlin.py`, `data_loader.py`).

Shapes are static: the gradient lattice is always ``(max_res + 1) x (max_res + 1)`` and the
drawn resolution only changes which lattice points are read, so one compilation serves every
key and every resolution. Coordinates are computed directly, ``i * res / size`` split into an
integer cell and a fraction with integer arithmetic, so any (H, W) works, not only powers of two
or multiples of the resolution.
"""

import math

import jax
import jax.numpy as jnp

from sspcab_jax.synthesis.augment import rotate


def _fade(t: jax.Array) -> jax.Array:
    # Quintic fade 6t^5 - 15t^4 + 10t^3, as rand_perlin_2d_np of DRAEM's perlin.py.
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _axis_coordinates(size: int, res: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Lattice cell index [size] int32 and fraction [size] float32 of ``i * res / size``."""
    scaled = jnp.arange(size, dtype=jnp.int32) * res
    return scaled // size, (scaled % size).astype(jnp.float32) / size


def random_resolution(key: jax.Array, max_log2: int = 5) -> jax.Array:
    """Draws a lattice resolution per axis, ``2 ** U{0, ..., max_log2}`` (``data_loader.py``).

    Args:
      key: PRNG key.
      max_log2: largest exponent (5 gives resolutions 1..32).

    Returns:
      [2] int32 (rows, cols) resolution.
    """
    return jnp.left_shift(1, jax.random.randint(key, (2,), 0, max_log2 + 1)).astype(jnp.int32)


def perlin_noise(
    key: jax.Array,
    shape: tuple[int, int],
    res: jax.Array | tuple[int, int],
    *,
    max_res: int = 32,
) -> jax.Array:
    """2D Perlin noise with random unit gradients, quintic fade, scaled by sqrt(2).

    Values lie in about [-1, 1] and are 0 on lattice points. ``res[0]`` cells span the rows,
    ``res[1]`` the columns (the official ``rand_perlin_2d_np`` axis convention).

    Args:
      key: PRNG key (draws the gradient angles, U[0, 2 pi)).
      shape: static (H, W).
      res: [2] int lattice resolution per axis, each in 1..max_res (may be traced).
      max_res: static bound on the resolution; fixes the lattice size.

    Returns:
      [H, W] float32 noise.
    """
    height, width = shape
    res = jnp.asarray(res, jnp.int32)
    angles = jax.random.uniform(key, (max_res + 1, max_res + 1), maxval=2.0 * math.pi)
    gradients = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # [R+1, R+1, 2]
    row0, ty = _axis_coordinates(height, res[0])
    col0, tx = _axis_coordinates(width, res[1])
    ty = ty[:, None]
    tx = tx[None, :]

    def dot(dr: int, dc: int) -> jax.Array:
        # Gradient at lattice corner (row0 + dr, col0 + dc) dotted with the offset to it.
        g = gradients[(row0 + dr)[:, None], (col0 + dc)[None, :]]  # [H, W, 2]
        return g[..., 0] * (ty - dr) + g[..., 1] * (tx - dc)

    fy, fx = _fade(ty), _fade(tx)
    top = dot(0, 0) * (1 - fx) + dot(0, 1) * fx
    bottom = dot(1, 0) * (1 - fx) + dot(1, 1) * fx
    return math.sqrt(2.0) * (top * (1 - fy) + bottom * fy)


def random_perlin_noise(
    key: jax.Array, shape: tuple[int, int], *, max_log2_res: int = 5
) -> jax.Array:
    """Perlin noise with a resolution drawn by `random_resolution`.

    Args:
      key: PRNG key.
      shape: static (H, W).
      max_log2_res: largest resolution exponent.

    Returns:
      [H, W] float32 noise in about [-1, 1].
    """
    k_res, k_noise = jax.random.split(key)
    res = random_resolution(k_res, max_log2_res)
    return perlin_noise(k_noise, shape, res, max_res=2**max_log2_res)


def perlin_mask(
    key: jax.Array,
    shape: tuple[int, int],
    *,
    threshold: float = 0.5,
    max_log2_res: int = 5,
    rotate_degrees: float = 90.0,
) -> jax.Array:
    """DRAEM anomaly mask (``data_loader.py``): rotated random-resolution Perlin noise > threshold.

    Args:
      key: PRNG key.
      shape: static (H, W).
      threshold: mask = rotated noise > threshold (0.5 officially).
      max_log2_res: resolutions are 2 ** U{0..max_log2_res} per axis (5 officially).
      rotate_degrees: the noise is rotated by U(-rotate_degrees, rotate_degrees) about the
        centre, bilinear, fill 0 (90 officially).

    Returns:
      [H, W, 1] float32 mask with values in {0, 1}.
    """
    k_noise, k_angle = jax.random.split(key)
    noise = random_perlin_noise(k_noise, shape, max_log2_res=max_log2_res)
    angle = jax.random.uniform(k_angle, (), minval=-rotate_degrees, maxval=rotate_degrees)
    rotated = rotate(noise[..., None], angle)
    return (rotated > threshold).astype(jnp.float32)
