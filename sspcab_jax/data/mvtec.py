"""MVTec AD: plain-Python reader of the on-disk layout, and the TFDS entry points.

Layout (``root`` is the extracted ``mvtec_anomaly_detection.tar.xz``)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<good|defect_type>/*.png
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png

Label 0 for ``good``, 1 for any other folder; masks only exist for defect images (``good`` gets
zeros). The same reader serves the embedded synthetic dataset, which uses this layout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sspcab_jax.data.images import (
    DatasetNotFoundError,
    ImageRecord,
    RecordSource,
    list_images,
    validate_records,
)

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
TEXTURE_CATEGORIES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")
OBJECT_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c not in TEXTURE_CATEGORIES)
SPLITS: tuple[str, ...] = ("train", "test")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download MVTec AD (mvtec_anomaly_detection.tar.xz, CC BY-NC-SA 4.0) from
https://www.mvtec.com/company/research/datasets/mvtec-ad and extract it so that the folder you
pass as the MVTec root (the TFDS manual_dir, by default <data_dir>/downloads/manual/) contains
one folder per category:

  <root>/bottle/train/good/000.png
  <root>/bottle/test/good/000.png
  <root>/bottle/test/broken_large/000.png
  <root>/bottle/ground_truth/broken_large/000_mask.png
  ... and likewise for cable, capsule, carpet, grid, hazelnut, leather, metal_nut, pill, screw,
  tile, toothbrush, transistor, wood, zipper.

For example: mkdir -p ROOT && tar -xJf mvtec_anomaly_detection.tar.xz -C ROOT
Without the real data, sspcab_jax.data.synthetic.write_synthetic_mvtec(ROOT) writes a small
dataset in the same layout.
"""


def check_category(category: str, known: tuple[str, ...] | None = CATEGORIES) -> None:
    """Raises ValueError naming the valid categories if ``category`` is not one of them."""
    if known is not None and category not in known:
        raise ValueError(f"Unknown MVTec AD category {category!r}; expected one of {list(known)}.")


def _missing(path: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{what} {path} is missing or empty.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


def list_mvtec(
    root: str | os.PathLike,
    category: str,
    split: str,
    *,
    check_images: bool = True,
    skip_corrupt: bool = False,
    categories: tuple[str, ...] | None = CATEGORIES,
) -> list[ImageRecord]:
    """Lists one split of one category of an MVTec-format tree.

    Args:
      root: folder holding one sub-folder per category.
      category: category name.
      split: "train" or "test".
      check_images: decode every image and mask once to catch corrupt files and size mismatches
        now rather than mid-training.
      skip_corrupt: drop unreadable images with a logged warning instead of raising.
      categories: allowed category names; None accepts any sub-folder (own data, synthetic).

    Returns:
      Records sorted by (defect_type, file name); test defects carry their mask path.

    Raises:
      DatasetNotFoundError: the folders are missing or empty (message has the instructions).
      ValueError: unknown category or split.
      CorruptImageError, MaskMismatchError: see :func:`validate_records`.
    """
    check_category(category, categories)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(SPLITS)}.")
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "MVTec AD root folder")
    split_dir = root / category / split
    if not split_dir.is_dir():
        raise _missing(split_dir, f"Folder for category {category!r}, split {split!r},")
    records = []
    for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        defect = defect_dir.name
        if split == "train" and defect != "good":
            logger.warning("Ignoring %s: MVTec training folders hold only 'good'.", defect_dir)
            continue
        for path in list_images(defect_dir):
            mask_path = None
            if defect != "good":
                mask = root / category / "ground_truth" / defect / f"{path.stem}_mask.png"
                if not mask.is_file():
                    raise DatasetNotFoundError(
                        f"Mask {mask} for defect image {path} is missing; every test image "
                        "outside test/good needs ground_truth/<defect>/<stem>_mask.png."
                    )
                mask_path = str(mask)
            records.append(
                ImageRecord(
                    image_path=str(path),
                    mask_path=mask_path,
                    label=int(defect != "good"),
                    defect_type=defect,
                    file_name=str(path.relative_to(root)),
                )
            )
    if not records:
        raise _missing(split_dir, f"Folder for category {category!r}, split {split!r},")
    if check_images:
        records = validate_records(records, skip_corrupt=skip_corrupt)
    return records


def mvtec_source(
    root: str | os.PathLike,
    category: str,
    split: str,
    **kwargs,
) -> RecordSource:
    """Random-access source over an MVTec-format folder (no TFDS); kwargs go to list_mvtec."""
    return RecordSource(list_mvtec(root, category, split, **kwargs))


def mvtec_tfds_source(
    category: str,
    split: str,
    *,
    data_dir: str | os.PathLike,
    manual_dir: str | os.PathLike | None = None,
):
    """Prepares (once) and opens the TFDS ``mvtec_ad/<category>`` data source.

    The dataset is written as ``array_record`` under ``data_dir`` and read back with
    :func:`tfds.data_source`; no TensorFlow is needed.

    Args:
      category: one of :data:`CATEGORIES`.
      split: "train" or "test".
      data_dir: TFDS data directory.
      manual_dir: extracted MVTec root; defaults to ``<data_dir>/downloads/manual``.

    Returns:
      A random-access data source of dicts with ``image`` ``uint8 [H, W, 3]``, ``mask``
      ``uint8 [H, W, 1]``, ``label``, ``defect_type`` and ``file_name`` (bytes).
    """
    import tensorflow_datasets as tfds

    from sspcab_jax.data.builders.mvtec_ad import MvtecAd

    check_category(category)
    builder = MvtecAd(config=category, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        download_config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(manual_dir)
        )
        builder.download_and_prepare(download_config=download_config)
    return builder.as_data_source(split=split)
