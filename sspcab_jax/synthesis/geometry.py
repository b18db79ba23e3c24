"""Geometry for the synthesis: bilinear sampling, and rotation (with zoom) about the centre.

Used by the clean-image rotation and the affine augmenter of DRAEM's loader (zero fill, as
OpenCV's ``warpAffine`` with a constant border) and by the self sources (mirrored borders).
"""

import jax
import jax.numpy as jnp


def materialize(x: jax.Array) -> jax.Array:
    """Identity that makes XLA compute ``x`` once before the gathers that read it.

    Without it XLA fuses a cheap producer (e.g. Perlin noise) into each of the four corner
    gathers and recomputes it per corner (~3x slower on CPU), and likewise fuses gathers into
    consumers that read each element several times. A scatter is never fused into its
    consumers, whereas ``optimization_barrier`` is removed before fusion on CPU.
    """
    x = jnp.asarray(x)
    return x.at[0, 0].set(x[0, 0])


def bilinear_sample(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Samples an image at fractional positions, bilinear, zero outside.

    Each of the four neighbours that falls outside the image contributes 0 (constant fill), as
    OpenCV's ``warpAffine`` with a constant border does.

    Args:
      image: [H, W, C] image.
      rows: [h, w] fractional row positions.
      cols: [h, w] fractional column positions.

    Returns:
      [h, w, C] sampled image.
    """
    height, width, channels = image.shape
    flat = materialize(image).reshape(height * width, channels)
    r0 = jnp.floor(rows)
    c0 = jnp.floor(cols)
    wr = (rows - r0)[..., None]
    wc = (cols - c0)[..., None]
    r0 = r0.astype(jnp.int32)
    c0 = c0.astype(jnp.int32)

    def corner(r: jax.Array, c: jax.Array) -> jax.Array:
        valid = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        index = jnp.clip(r, 0, height - 1) * width + jnp.clip(c, 0, width - 1)
        return jnp.where(valid[..., None], flat[index], 0.0)

    top = corner(r0, c0) * (1 - wc) + corner(r0, c0 + 1) * wc
    bottom = corner(r0 + 1, c0) * (1 - wc) + corner(r0 + 1, c0 + 1) * wc
    # Materialised too, or consumers that broadcast it (e.g. a mask over channels) redo the
    # gathers per element they read.
    return materialize((top * (1 - wr) + bottom * wr).astype(image.dtype))


def rotation_source_points(
    height: int, width: int, degrees: jax.Array | float, zoom: jax.Array | float | None = None
) -> tuple[jax.Array, jax.Array]:
    """Where each output pixel of a rotation (and zoom) about the image centre reads its input.

    Args:
      height: static output height.
      width: static output width.
      degrees: scalar angle in degrees (may be traced); positive turns the picture
        counter-clockwise as displayed.
      zoom: scalar magnification (may be traced), or None for none.

    Returns:
      ([H, W] source rows, [H, W] source columns), fractional.
    """
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    dy, dx = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32) - cy,
        jnp.arange(width, dtype=jnp.float32) - cx,
        indexing="ij",
    )
    if zoom is not None:
        dy, dx = dy / zoom, dx / zoom
    # Inverse mapping: each output pixel reads the source point rotated back by -theta
    # (rows point down, hence the signs).
    return sin * dx + cos * dy + cy, cos * dx - sin * dy + cx


def rotate(image: jax.Array, degrees: jax.Array | float) -> jax.Array:
    """Rotates an image about its centre, bilinear, fill 0, same size.

    Positive angles turn the picture counter-clockwise as displayed (row 0 at the top), so
    ``rotate(x, 90)`` equals ``np.rot90(x)`` for a square image.

    Args:
      image: [H, W, C] image.
      degrees: scalar angle in degrees (may be traced).

    Returns:
      [H, W, C] rotated image.
    """
    return bilinear_sample(image, *rotation_source_points(*image.shape[:2], degrees))
