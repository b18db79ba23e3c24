"""Pillow's bilinear resize (``Image.resize(..., BILINEAR)``) without Pillow, bit for bit.

The detector resizes with Pillow (as the evaluation pipeline does); the loader of an exported
detector needs the same numbers without Pillow. Pillow's filter (``libImaging/Resample.c``) is
separable: a horizontal pass and a vertical one, each a weighted sum over a window of input
pixels whose weights depend only on the two sizes. The weights are computed here in float64
NumPy exactly as Pillow does; the passes:

* ``uint8`` images (modes ``L`` / ``RGB``): weights in 22-bit fixed point, integer sums with
  rounding, clipped to 0-255 after each pass -- identical to Pillow;
* ``float32`` planes (mode ``F``): float64 weights and sums, in NumPy (JAX computes in float32
  unless 64-bit mode is on), window position by window position in Pillow's order, rounded to
  float32 after each pass -- identical to Pillow.

Pass order: Pillow 13 runs the vertical pass first when the height shrinks by more than twice
as many pixels as the width (:func:`vertical_first`, checked against Pillow by the tests);
earlier versions always ran the horizontal pass first. The order is part of the result, since
each pass rounds (to ``uint8``, or to float32).
"""

from __future__ import annotations

import functools
import math
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images


def _pillow_major() -> int:
    """Major version of the installed Pillow (read from its metadata, without importing it)."""
    try:
        return int(metadata.version("pillow").split(".")[0])
    except metadata.PackageNotFoundError:  # no Pillow: follow the current one
        return 13


PILLOW_VERTICAL_FIRST = _pillow_major() >= 13


@functools.lru_cache(maxsize=64)
def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's normalised bilinear weights ``[out_size, in_size]`` (float64).

    Output pixel ``i`` samples around ``(i + 0.5) * in / out``; when shrinking, the triangle
    filter is widened by the scale (antialiasing), as Pillow's ``precompute_coeffs`` does.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        low = max(math.trunc(center - support + 0.5), 0)  # C's (int) truncates
        high = min(math.trunc(center + support + 0.5), in_size)
        x = np.arange(low, high, dtype=np.float64)
        w = np.maximum(1.0 - np.abs((x - center + 0.5) * (1.0 / filterscale)), 0.0)
        total = np.cumsum(w)[-1] if w.size else 0.0  # summed in order, as Pillow does
        weights[i, low:high] = w / total if total != 0.0 else w
    return weights


@functools.lru_cache(maxsize=64)
def fixed_point_weights(in_size: int, out_size: int) -> np.ndarray:
    """The weights as Pillow's 8-bit path rounds them: ``int32 [out_size, in_size]``."""
    scaled = bilinear_weights(in_size, out_size) * (1 << PRECISION_BITS)
    return np.trunc(scaled + np.where(scaled < 0, -0.5, 0.5)).astype(np.int32)


def vertical_first(in_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Whether Pillow resizes ``in_size -> out_size`` (``(h, w)``) vertically first."""
    shrink_h, shrink_w = in_size[0] - out_size[0], in_size[1] - out_size[1]
    return PILLOW_VERTICAL_FIRST and shrink_h > 0 and shrink_h > 2 * shrink_w


def _pass_uint8(image: jax.Array, weights: np.ndarray, axis: int) -> jax.Array:
    """One fixed-point pass along ``axis`` of ``int32 [..., H, W, C]``; uint8-range int32."""
    sums = jnp.tensordot(image, jnp.asarray(weights), axes=([axis], [1]))
    sums = jnp.moveaxis(sums, -1, axis) + (1 << (PRECISION_BITS - 1))
    return jnp.clip(sums >> PRECISION_BITS, 0, 255)


def _pass_float(planes: np.ndarray, in_size: int, out_size: int, axis: int) -> np.ndarray:
    """One pass along ``axis`` of float32 planes, summed in float64 in Pillow's order."""
    weights = bilinear_weights(in_size, out_size)
    used = weights > 0
    first = np.argmax(used, axis=1)  # Pillow's window start (weights are > 0 inside it)
    count = used.sum(axis=1)
    x = np.moveaxis(np.asarray(planes, np.float64), axis, -1)
    total = np.zeros(x.shape[:-1] + (out_size,), np.float64)
    for j in range(int(count.max())):  # ss += pixel * k, one window position at a time
        inside = j < count
        index = np.minimum(first + j, in_size - 1)
        k = np.where(inside, weights[np.arange(out_size), index], 0.0)
        total += x[..., index] * k
    return np.moveaxis(total.astype(np.float32), -1, axis)


@functools.partial(jax.jit, static_argnames="size")
def resize_uint8(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``uint8 [..., H, W, C]`` -> ``uint8 [..., h, w, C]``, equal to Pillow's bilinear resize.

    Args:
      images: one image or a batch; channels are resized independently (Pillow's ``L`` and
        ``RGB`` modes do the same).
      size: ``(h, w)``.
    """
    height, width = images.shape[-3:-1]
    x = images.astype(jnp.int32)

    def horizontal(x):
        if width == size[1]:
            return x
        return _pass_uint8(x, fixed_point_weights(width, size[1]), x.ndim - 2)

    def vertical(x):
        if height == size[0]:
            return x
        return _pass_uint8(x, fixed_point_weights(height, size[0]), x.ndim - 3)

    # Each pass rounds to uint8, so the order of the two passes is part of the result.
    if vertical_first((height, width), size):
        return horizontal(vertical(x)).astype(jnp.uint8)
    return vertical(horizontal(x)).astype(jnp.uint8)


def resize_float(planes, size: tuple[int, int]) -> np.ndarray:
    """``float32 [..., H, W]`` -> ``float32 [..., h, w]``, Pillow's bilinear resize of mode ``F``.

    Args:
      planes: one plane or a batch of planes (maps, or the channels of a float image).
      size: ``(h, w)``.
    """
    x = np.asarray(planes, np.float32)
    height, width = x.shape[-2:]

    def horizontal(x):
        return x if width == size[1] else _pass_float(x, width, size[1], x.ndim - 1)

    def vertical(x):
        return x if height == size[0] else _pass_float(x, height, size[0], x.ndim - 2)

    if vertical_first((height, width), size):
        return horizontal(vertical(x))
    return vertical(horizontal(x))
