"""OpenCV's ``cv2.resize(..., INTER_LINEAR)`` for ``uint8`` images, bit for bit, in NumPy.

DRAEM's ``data_loader.py`` resizes MVTec images, DTD textures and ground-truth masks with
``cv2.resize`` and its default ``INTER_LINEAR``: bilinear with half-pixel centres and no
antialiasing, so a 1024 -> 256 downscale reads only 2 x 2 of every 4 x 4 source pixels (PIL's
bilinear, our default, averages them all). This module reproduces it without OpenCV:

* Source position of output pixel ``d``: ``(d + 0.5) * scale - 0.5`` with ``scale = in / out``
  (computed in doubles, then rounded to float32 as OpenCV does).
* Horizontally the position is clamped to the image (weight 0 outside); vertically it is not
  clamped, only the two source rows are, so a border row mixes one row with itself and the two
  rounded weights may sum to 2047 or 2049.
* Weights are rounded to 11-bit fixed point (``INTER_RESIZE_COEF_BITS``, scale 2048). The
  horizontal pass is exact integer arithmetic; the vertical pass uses OpenCV's vectorised
  rounding: ``((((S0 >> 4) * b0) >> 16) + (((S1 >> 4) * b1) >> 16) + 2) >> 2``.
* An exact 2x downscale in both axes is OpenCV's ``INTER_AREA`` shortcut: the rounded mean of
  each 2 x 2 block.

Checked against OpenCV 4.14 on 300 random shapes (1..120 pixels, 1 and 3 channels, up- and
downscales) and on 700-1024 -> 256 downscales: identical. OpenCV builds whose vertical pass
finishes rows with scalar code (``(b0 * S0 + b1 * S1 + 2**21) >> 22``) can differ by one level
on the last ``(width * channels) mod 8`` values of a row; none for 256-wide outputs.
"""

from __future__ import annotations

import numpy as np

COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
COEF_SCALE = 1 << COEF_BITS


def linear_taps(
    in_size: int, out_size: int, *, clamp: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and fixed-point weights of OpenCV's bilinear resize along one axis.

    Args:
      in_size: source length.
      out_size: output length.
      clamp: clamp the source position into the image (OpenCV does so horizontally only).

    Returns:
      ``(index0, index1, weight0, weight1)``, each ``int64 [out_size]``; output ``d`` is
      ``(weight0 * src[index0] + weight1 * src[index1]) / 2048``.
    """
    scale = 1.0 / (out_size / in_size)  # OpenCV inverts the inverse scale, in doubles
    position = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(position).astype(np.int64)
    frac = (position - index.astype(np.float32)).astype(np.float32)
    if clamp:
        low = index < 0
        high = index >= in_size - 1
        frac[low | high] = 0.0
        index[low] = 0
        index[high] = in_size - 1
    # Each weight is rounded on its own (half to even, as cvRound), from float32 products.
    weight0 = np.rint((np.float32(1.0) - frac) * np.float32(COEF_SCALE)).astype(np.int64)
    weight1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int64)
    index1 = np.clip(index + 1, 0, in_size - 1)
    return np.clip(index, 0, in_size - 1), index1, weight0, weight1


def resize_linear_cv2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(image, (width, height))`` (``INTER_LINEAR``) for ``uint8`` images.

    Args:
      image: ``uint8 [H, W, C]``.
      height: output height.
      width: output width.

    Returns:
      ``uint8 [height, width, C]``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 [H, W, C] image, got {image.dtype} {image.shape}")
    in_h, in_w, channels = image.shape
    if (in_h, in_w) == (height, width):
        return image.copy()
    pixels = image.astype(np.int64)
    if (in_h, in_w) == (2 * height, 2 * width):
        blocks = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
        return ((blocks + 2) >> 2).astype(np.uint8)
    x0, x1, a0, a1 = linear_taps(in_w, width, clamp=True)
    y0, y1, b0, b1 = linear_taps(in_h, height, clamp=False)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]  # [H, w, C]
    top = rows[y0] >> 4
    bottom = rows[y1] >> 4
    b0 = b0[:, None, None]
    b1 = b1[:, None, None]
    out = (((top * b0) >> 16) + ((bottom * b1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)
