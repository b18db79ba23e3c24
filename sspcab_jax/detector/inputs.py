"""Turning what a user passes into model inputs: checks, file reading, resizing, channels.

Accepted inputs (see :meth:`sspcab_jax.detector.Detector.__call__`):

* an array (NumPy or JAX): ``[H, W]`` (one grayscale image), ``[H, W, C]`` (one image) or
  ``[N, H, W, C]`` (a batch), ``C`` = 1 or 3; a rank-3 array is always one image;
* a file path (``str`` / ``pathlib.Path``), read with Pillow as RGB;
* a list or tuple of images (arrays of any size, or paths).

Values: ``uint8`` (or another integer type) in 0-255, or floats in [0, 1]; NaN is rejected.
Resizing follows the evaluation pipeline (Pillow bilinear on the ``uint8`` image, then / 255);
float images are resized channel by channel with the same Pillow filter in float32. Pillow is
imported only where a file is read or an image resized, so that the exported-detector loader
(which resizes with :mod:`sspcab_jax.export.resize`) can check inputs without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)
CHANNEL_ORDERS = ("rgb", "bgr")
_PATH_TYPES = (str, os.PathLike)


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file as RGB ``uint8 [H, W, 3]``; ValueError naming the path if not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ValueError(f"Cannot read image file {path}: {error}") from error


def _one_image(item, where: str) -> np.ndarray:
    if isinstance(item, _PATH_TYPES):
        return read_image_file(item)
    array = np.asarray(item)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(
            f"{where}: expected an image [H, W], [H, W, C] or a file path, got shape {array.shape}."
        )
    return array


def collect_images(images) -> tuple[list[np.ndarray], bool]:
    """Splits the input into single images ``[H, W, C]`` (dtype unchanged).

    Args:
      images: see the module docstring.

    Returns:
      ``(images, is_list)``: ``is_list`` is True for list / tuple input, whose maps are then
      returned as lists.

    Raises:
      ValueError: wrong rank, empty input.
    """
    if isinstance(images, _PATH_TYPES):
        return [read_image_file(images)], False
    if isinstance(images, Sequence) and not isinstance(images, (bytes, bytearray)):
        if len(images) == 0:
            raise ValueError("Got an empty list of images; pass at least one image.")
        return [_one_image(item, f"image {i}") for i, item in enumerate(images)], True
    array = np.asarray(images)
    if array.ndim in (2, 3):
        return [_one_image(array, "image")], False
    if array.ndim != 4:
        raise ValueError(
            "Expected one image [H, W] / [H, W, C], a batch [N, H, W, C], a file path or a "
            f"list of them; got an array of shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError("Got an empty batch [0, H, W, C]; pass at least one image.")
    return list(array), False


def check_values(image: np.ndarray, where: str) -> np.ndarray:
    """Validates dtype, size and value range; returns ``uint8`` or ``float32`` ``[H, W, C]``.

    Raises:
      ValueError: empty image, unsupported dtype, NaN, or values outside 0-255 / [0, 1].
    """
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where} is empty (shape {image.shape}).")
    if image.shape[-1] not in (1, 3):
        raise ValueError(
            f"{where}: expected 1 (grayscale) or 3 (RGB) channels, got {image.shape[-1]} "
            f"(shape {image.shape}); drop an alpha channel with image[..., :3]."
        )
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 255:
            raise ValueError(
                f"{where}: integer pixels must be in 0-255, got {image.min()}..{image.max()}."
            )
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) or image.dtype.name == "bfloat16":
        image = image.astype(np.float32)
        if np.isnan(image).any():
            raise ValueError(f"{where} has NaN pixels; replace them before calling.")
        if image.min() < 0.0 or image.max() > 1.0:
            raise ValueError(
                f"{where}: float pixels must be in [0, 1], got {image.min()}..{image.max()}; "
                "divide 0-255 floats by 255 or pass uint8."
            )
        return image
    raise ValueError(f"{where}: expected uint8 or float pixels, got dtype {image.dtype}.")


def _resize_float_channels(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    height, width = size
    planes = [
        np.asarray(
            Image.fromarray(image[..., c]).resize((width, height), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(planes, axis=-1)


def resize_to_float(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``uint8`` / ``float32`` ``[H, W, C]`` -> float32 in [0, 1] of ``size`` (None: keep).

    ``uint8`` images are resized as ``uint8`` with Pillow's bilinear filter, exactly as the
    evaluation pipeline does, then divided by 255.
    """
    if size is not None and image.shape[:2] != tuple(size):
        if image.dtype == np.uint8:
            from PIL import Image

            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            resized = np.asarray(pil.resize(size[::-1], Image.Resampling.BILINEAR))
            image = resized.reshape(size + (image.shape[-1],))
        else:
            image = np.clip(_resize_float_channels(image, size), 0.0, 1.0)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def match_channels(image: np.ndarray, channels: int, order: str) -> np.ndarray:
    """Converts float ``[H, W, 1 | 3]`` to the model's channels and order.

    Grayscale input for an RGB model is repeated (as the data pipeline does); RGB input for a
    grayscale model becomes luma ``0.299 R + 0.587 G + 0.114 B`` (as in training); ``'bgr'``
    reverses the RGB channels.
    """
    if channels == 3:
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return image[..., ::-1] if order == "bgr" else image
    if image.shape[-1] == 3:
        return image @ LUMA[:, None]
    return image


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (Pillow) resize of a float map ``[h, w]`` to ``size``; float32."""
    amap = np.asarray(amap, np.float32)
    if amap.shape == tuple(size):
        return amap
    from PIL import Image

    pil = Image.fromarray(amap)
    return np.asarray(pil.resize(size[::-1], Image.Resampling.BILINEAR), dtype=np.float32)
