"""A user's own images: a folder of normal images for training, a labelled folder for testing.

Convention::

    <train_dir>/**/*.png                 normal images (any sub-folders, any image format)
    <test_dir>/good/*.png                normal test images (label 0)
    <test_dir>/<anything else>/*.png     anomalous test images (label 1, defect_type = folder)
    masks, optional, first match wins:
      <mask_dir>/<defect>/<stem>_mask.png or <mask_dir>/<defect>/<stem>.png   (parallel folder)
      <test_dir>/<defect>/<stem>_mask.png                                     (suffix, same folder)

Files whose stem ends in ``_mask`` are never treated as images. Anomalous images without a mask
get an all-zero mask: image-level metrics stay valid, pixel-level ones are then meaningless.
An MVTec category folder is a special case: ``test_dir=<cat>/test`` with
``mask_dir=<cat>/ground_truth``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sspcab_jax.data.images import (
    IMAGE_EXTENSIONS,
    DatasetNotFoundError,
    ImageRecord,
    RecordSource,
    list_images,
    validate_records,
)

_HELP = (
    "Expected normal training images under the train folder (any depth), and test images in "
    "<test_dir>/good/ (normal) and <test_dir>/<defect>/ (anomalous)."
)


def _find_mask(image: Path, defect: str, mask_dir: Path | None) -> str | None:
    candidates = []
    if mask_dir is not None:
        candidates += [mask_dir / defect / f"{image.stem}_mask{ext}" for ext in IMAGE_EXTENSIONS]
        candidates += [mask_dir / defect / f"{image.stem}{ext}" for ext in IMAGE_EXTENSIONS]
    candidates += [image.parent / f"{image.stem}_mask{ext}" for ext in IMAGE_EXTENSIONS]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def _images(folder: Path, recursive: bool) -> list[Path]:
    return [p for p in list_images(folder, recursive=recursive) if not p.stem.endswith("_mask")]


def list_folder_train(
    train_dir: str | os.PathLike, *, check_images: bool = True, skip_corrupt: bool = False
) -> list[ImageRecord]:
    """Records of every image under ``train_dir`` (recursive), all labelled normal.

    Raises:
      DatasetNotFoundError: the folder is missing or holds no images.
    """
    train_dir = Path(train_dir)
    paths = _images(train_dir, recursive=True) if train_dir.is_dir() else []
    if not paths:
        raise DatasetNotFoundError(f"No images found in {train_dir}. {_HELP}")
    records = [ImageRecord(str(p), None, 0, "good", str(p.relative_to(train_dir))) for p in paths]
    return validate_records(records, skip_corrupt=skip_corrupt) if check_images else records


def list_folder_test(
    test_dir: str | os.PathLike,
    *,
    mask_dir: str | os.PathLike | None = None,
    check_images: bool = True,
    skip_corrupt: bool = False,
) -> list[ImageRecord]:
    """Records of ``test_dir/<defect>/*``; ``good`` is normal, other folders anomalous.

    Raises:
      DatasetNotFoundError: no sub-folder holds images.
      MaskMismatchError: a mask differs in size from its image.
    """
    test_dir = Path(test_dir)
    mask_root = None if mask_dir is None else Path(mask_dir)
    records = []
    subdirs = sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    for sub in subdirs:
        defect = sub.name
        for path in _images(sub, recursive=False):
            mask = None if defect == "good" else _find_mask(path, defect, mask_root)
            records.append(
                ImageRecord(
                    str(path), mask, int(defect != "good"), defect, str(path.relative_to(test_dir))
                )
            )
    if not records:
        raise DatasetNotFoundError(f"No test images found under {test_dir}/<sub-folder>/. {_HELP}")
    return validate_records(records, skip_corrupt=skip_corrupt) if check_images else records


def folder_source(
    directory: str | os.PathLike, split: str, *, mask_dir: str | os.PathLike | None = None, **kwargs
) -> RecordSource:
    """Random-access source for ``split`` "train" (normal images) or "test" (labelled folders)."""
    if split == "train":
        return RecordSource(list_folder_train(directory, **kwargs))
    if split == "test":
        return RecordSource(list_folder_test(directory, mask_dir=mask_dir, **kwargs))
    raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
