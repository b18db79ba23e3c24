"""Image reading, validation and resizing helpers shared by every reader.

Conventions: images are ``uint8`` NHWC arrays ``[H, W, 3]``; masks are ``uint8`` ``[H, W, 1]``
with values in ``{0, 255}`` (anything > 0 in the file counts as anomalous).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sspcab_jax.data.cv2_resize import resize_linear_cv2

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

Size = int | tuple[int, int]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing or holds no images; the message says how to get it."""


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names the file."""


class MaskMismatchError(ValueError):
    """A ground-truth mask does not have the size of its image."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of an on-disk dataset, before decoding.

    Attributes:
      image_path: path of the image file.
      mask_path: path of the ground-truth mask, or None (normal image, or no mask available:
        an all-zero mask is then used).
      label: 0 normal ("good"), 1 anomalous.
      defect_type: "good" or the name of the defect folder.
      file_name: path relative to the dataset root, unique within a split.
    """

    image_path: str
    mask_path: str | None
    label: int
    defect_type: str
    file_name: str


def as_hw(size: Size) -> tuple[int, int]:
    """Returns ``(height, width)`` from an int (square) or a pair."""
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Sorted image files of a folder (by extension, case-insensitive)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file as RGB.

    Args:
      path: image file (any format Pillow reads; grayscale and palette images become RGB).

    Returns:
      ``uint8`` array ``[H, W, 3]``.

    Raises:
      CorruptImageError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"Cannot read image {path}: {error}") from error


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decodes a ground-truth mask, binarised.

    Returns:
      ``uint8`` array ``[H, W, 1]`` with values in ``{0, 255}``.

    Raises:
      CorruptImageError: the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"Cannot read mask {path}: {error}") from error
    return np.where(gray > 0, 255, 0).astype(np.uint8)[..., None]


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file, fully decoded once so that corruption shows.

    Raises:
      CorruptImageError: the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return (image.height, image.width)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"Cannot read image {path}: {error}") from error


def validate_records(
    records: Iterable[ImageRecord], *, skip_corrupt: bool = False
) -> list[ImageRecord]:
    """Decodes every image and mask once; checks that masks match their images in size.

    Args:
      records: records to check.
      skip_corrupt: if True, unreadable images are dropped with a warning; otherwise the first
        one raises.

    Returns:
      The readable records, in order.

    Raises:
      CorruptImageError: an image or mask cannot be decoded (and ``skip_corrupt`` is False).
      MaskMismatchError: a mask's size differs from its image's (always fatal: a wrong mask
        silently corrupts pixel-level metrics).
    """
    kept = []
    for record in records:
        try:
            size = image_size(record.image_path)
            if record.mask_path is not None:
                mask_size = image_size(record.mask_path)
                if mask_size != size:
                    raise MaskMismatchError(
                        f"Mask {record.mask_path} is {mask_size[0]}x{mask_size[1]} (HxW) but its "
                        f"image {record.image_path} is {size[0]}x{size[1]}; masks must have the "
                        "size of their image."
                    )
        except CorruptImageError as error:
            if not skip_corrupt:
                raise CorruptImageError(
                    f"{error}. Remove or replace the file, or skip unreadable files with "
                    "--config.data.skip_corrupt=True (skip_corrupt=True from Python)."
                ) from error
            logger.warning("Skipping unreadable file: %s", error)
            continue
        kept.append(record)
    return kept


RESIZE_METHODS: tuple[str, ...] = ("pil", "cv2")
MASK_RULES: tuple[str, ...] = ("nearest", "official")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raises ValueError naming the config field and its valid values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is invalid: expected one of {list(allowed)}.")


def resize_image(image: np.ndarray, size: Size, method: str = "pil") -> np.ndarray:
    """Bilinear resize of ``[H, W, C]`` ``uint8`` (C = 1 or 3) to ``size``; no-op if equal.

    Args:
      image: ``uint8 [H, W, C]``.
      size: output ``(height, width)`` or an int for squares.
      method: ``'pil'`` (PIL's bilinear, antialiased when downscaling) or ``'cv2'`` (OpenCV's
        ``INTER_LINEAR`` bit for bit, no antialiasing: what DRAEM's ``data_loader.py`` uses).

    Returns:
      ``uint8 [height, width, C]``.
    """
    check_choice("resize method", method, RESIZE_METHODS)
    height, width = as_hw(size)
    if image.shape[:2] == (height, width):
        return image
    if method == "cv2":
        return resize_linear_cv2(image, height, width)
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[..., None] if channels == 1 else out


def resize_mask(mask: np.ndarray, size: Size, rule: str = "nearest") -> np.ndarray:
    """Resizes a binary ``[H, W, 1]`` ``{0, 255}`` mask; the result is binary again.

    Args:
      mask: ``uint8 [H, W, 1]`` with values in ``{0, 255}``.
      size: output ``(height, width)`` or an int for squares.
      rule: ``'nearest'``: nearest-neighbour resize. ``'official'``: DRAEM's ``test_DRAEM.py``
        rule: OpenCV bilinear resize, divide by 255, truncate to integers, so a pixel is
        anomalous only where the resized value is exactly 255 (soft edges become normal).

    Returns:
      ``uint8 [height, width, 1]`` with values in ``{0, 255}``.
    """
    check_choice("mask rule", rule, MASK_RULES)
    height, width = as_hw(size)
    if rule == "official":
        resized = resize_linear_cv2(mask, height, width)
        return np.where(resized == 255, 255, 0).astype(np.uint8)
    if mask.shape[:2] == (height, width):
        return mask
    pil = Image.fromarray(mask[..., 0])
    return np.asarray(pil.resize((width, height), Image.Resampling.NEAREST), dtype=np.uint8)[
        ..., None
    ]


class RecordSource(Sequence):
    """Random-access source over :class:`ImageRecord` s, decoding on access.

    Each element is a dict: ``image`` ``uint8 [H, W, 3]``, ``mask`` ``uint8 [H, W, 1]``
    (zeros when the record has no mask), ``label`` ``int64``, ``defect_type`` and ``file_name``
    (``str``). Same keys and dtypes as the TFDS MVTec data source, so pipelines accept either.
    """

    def __init__(self, records: Sequence[ImageRecord]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        record = self.records[index]
        image = read_image(record.image_path)
        if record.mask_path is None:
            mask = np.zeros(image.shape[:2] + (1,), np.uint8)
        else:
            mask = read_mask(record.mask_path)
            if mask.shape[:2] != image.shape[:2]:
                raise MaskMismatchError(
                    f"Mask {record.mask_path} has size {mask.shape[:2]} but image "
                    f"{record.image_path} has size {image.shape[:2]}."
                )
        return {
            "image": image,
            "mask": mask,
            "label": np.int64(record.label),
            "defect_type": record.defect_type,
            "file_name": record.file_name,
        }

    def __repr__(self) -> str:
        return f"RecordSource({len(self)} records)"
