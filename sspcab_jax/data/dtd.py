"""Anomaly-source textures for DRAEM: TFDS ``dtd``, else a folder of images, else None.

TFDS is only read, never downloaded (``download=False``): offline, a download attempt blocks for
minutes before failing. When neither source is available the caller falls back to Perlin-noise
textures; the source used is logged once at INFO level.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from sspcab_jax.data.images import (
    CorruptImageError,
    Size,
    as_hw,
    list_images,
    read_image,
    resize_image,
)

logger = logging.getLogger(__name__)


def _from_tfds(data_dir, split, size, max_images, rng) -> np.ndarray | None:
    try:
        import tensorflow_datasets as tfds

        source = tfds.data_source(
            "dtd",
            split=split,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            download=False,
        )
        count = len(source)
    except Exception as error:  # Any failure means "not prepared here": fall back.
        logger.debug("TFDS dtd unavailable: %s", error)
        return None
    if count == 0:
        return None
    indices = np.sort(rng.permutation(count)[:max_images])
    images = [resize_image(np.asarray(source[int(i)]["image"], np.uint8), size) for i in indices]
    logger.info("Anomaly sources: %d images from TFDS dtd (split %s).", len(images), split)
    return np.stack(images)


def _from_folder(folder, size, max_images, rng) -> np.ndarray | None:
    paths = list_images(folder, recursive=True)
    if not paths:
        logger.info("Anomaly-source folder %s has no images.", folder)
        return None
    chosen = sorted(rng.permutation(len(paths))[:max_images])
    images = []
    for i in chosen:
        try:
            images.append(resize_image(read_image(paths[i]), size))
        except CorruptImageError as error:
            logger.warning("Skipping unreadable anomaly source: %s", error)
    if not images:
        return None
    logger.info("Anomaly sources: %d images from folder %s.", len(images), folder)
    return np.stack(images)


def load_anomaly_sources(
    *,
    size: Size,
    max_images: int = 256,
    data_dir: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    split: str = "train",
    use_tfds: bool = True,
    seed: int = 0,
) -> np.ndarray | None:
    """Loads texture images for anomaly synthesis.

    Tries, in order: the TFDS ``dtd`` dataset already prepared under ``data_dir`` (as
    array_record), then every image under ``folder`` (recursively). A random subset of at most
    ``max_images`` (deterministic from ``seed``) is decoded and resized.

    Args:
      size: output ``(height, width)``, or an int for squares.
      max_images: cap on the number of textures kept in memory.
      data_dir: TFDS data directory (None: the TFDS default, ``~/tensorflow_datasets``).
      folder: folder of texture images, e.g. the extracted ``dtd/images``.
      split: TFDS split to read; any split works for anomaly synthesis.
      use_tfds: set False to skip the TFDS lookup.
      seed: seed of the subset choice.

    Returns:
      ``float32 [S, H, W, 3]`` in ``[0, 1]``, or None when no source is available (the caller
      then uses Perlin-noise textures).
    """
    size = as_hw(size)
    rng = np.random.default_rng(seed)
    images = _from_tfds(data_dir, split, size, max_images, rng) if use_tfds else None
    if images is None and folder is not None:
        images = _from_folder(folder, size, max_images, rng)
    if images is None:
        logger.info(
            "Anomaly sources: no prepared TFDS dtd%s; falling back to Perlin-noise textures.",
            "" if folder is None else f" and no images under {folder}",
        )
        return None
    return images.astype(np.float32) / 255.0
