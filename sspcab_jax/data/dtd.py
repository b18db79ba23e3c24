"""Anomaly-source textures for DRAEM: the Describable Textures Dataset (DTD).

DRAEM's ``data_loader.py`` draws each sample's texture from all 5,640 DTD images
(``<dtd>/images/*/*.jpg``, 47 categories x 120). Two places are searched: TFDS ``dtd``
already prepared under a data directory (its ``train``, ``validation`` and ``test`` splits,
1,880 images each, are together the whole set) and a folder of images (the extracted
``dtd/images``). TFDS is only read, never downloaded (``download=False``): offline, a download
attempt blocks for minutes before failing.

:func:`load_anomaly_sources` returns None when neither is available (the caller may then use
Perlin textures); :func:`require_anomaly_sources` raises :class:`DatasetNotFoundError` with
:data:`DTD_INSTRUCTIONS` instead.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from sspcab_jax.data.images import (
    CorruptImageError,
    DatasetNotFoundError,
    Size,
    as_hw,
    list_images,
    read_image,
    resize_image,
)
from sspcab_jax.data.texture_bank import TextureBank, folder_bank, tfds_bank

logger = logging.getLogger(__name__)

DTD_SPLITS: tuple[str, ...] = ("train", "validation", "test")
DTD_IMAGE_COUNT = 5640

DTD_INSTRUCTIONS = """\
DRAEM's anomaly sources are the 5,640 images of the Describable Textures Dataset (DTD).
Either extract the archive and point data.anomaly_source_dir at its images/ folder:

  wget https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz
  tar -xzf dtd-r1.0.1.tar.gz -C DIR        # gives DIR/dtd/images/<47 categories>/*.jpg
  --config.data.anomaly_source_dir=DIR/dtd/images

or prepare TFDS dtd as array_record (this downloads the same archive) and pass its data_dir:

  tfds build dtd --file_format=array_record --data_dir=TFDS_DIR
  --config.data.dtd_data_dir=TFDS_DIR

To train without DTD, accept Perlin-noise textures explicitly:
  --config.data.anomaly_sources=perlin
"""


def _split_names(split: str) -> tuple[str, ...]:
    if split == "all":
        return DTD_SPLITS
    names = tuple(split.split("+"))
    unknown = [n for n in names if n not in DTD_SPLITS]
    if unknown:
        raise ValueError(f"Unknown DTD split(s) {unknown}; use 'all' or '+'-joined {DTD_SPLITS}.")
    return names


def _choose(count: int, max_images: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random subset, or all indices when ``max_images`` is None."""
    if max_images is None or max_images >= count:
        return np.arange(count)
    return np.sort(rng.permutation(count)[:max_images])


def tfds_dtd_sources(data_dir, split: str) -> list | None:
    """Random-access TFDS ``dtd`` sources of ``split`` (``'all'``, ``'+'``-joined), or None."""
    names = _split_names(split)  # a misspelt split is an error, not "DTD missing"
    try:
        import tensorflow_datasets as tfds

        return [
            tfds.data_source(
                "dtd",
                split=name,
                data_dir=None if data_dir is None else os.fspath(data_dir),
                download=False,
            )
            for name in names
        ]
    except Exception as error:  # Any other failure means "not prepared here".
        logger.debug("TFDS dtd unavailable: %s", error)
        return None


def _from_tfds(data_dir, split, size, max_images, rng, resize) -> np.ndarray | None:
    sources = tfds_dtd_sources(data_dir, split)
    if sources is None:
        return None
    counts = [len(source) for source in sources]
    offsets = np.cumsum([0] + counts)
    if offsets[-1] == 0:
        return None
    images = []
    for i in _choose(int(offsets[-1]), max_images, rng):
        which = int(np.searchsorted(offsets, i, side="right") - 1)
        example = sources[which][int(i - offsets[which])]
        images.append(resize_image(np.asarray(example["image"], np.uint8), size, resize))
    logger.info("Anomaly sources: %d images from TFDS dtd (split %s).", len(images), split)
    return np.stack(images)


def _from_folder(folder, size, max_images, rng, resize) -> np.ndarray | None:
    paths = list_images(folder, recursive=True)
    if not paths:
        logger.info("Anomaly-source folder %s has no images.", folder)
        return None
    images = []
    for i in _choose(len(paths), max_images, rng):
        try:
            images.append(resize_image(read_image(paths[i]), size, resize))
        except CorruptImageError as error:
            logger.warning("Skipping unreadable anomaly source: %s", error)
    if not images:
        return None
    logger.info("Anomaly sources: %d images from folder %s.", len(images), folder)
    return np.stack(images)


def load_anomaly_sources(
    *,
    size: Size,
    max_images: int | None = 256,
    data_dir: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    split: str = "train",
    use_tfds: bool = True,
    seed: int = 0,
    resize: str = "pil",
    dtype: str = "float32",
) -> np.ndarray | None:
    """Loads texture images for anomaly synthesis.

    Tries, in order: the TFDS ``dtd`` dataset already prepared under ``data_dir`` (as
    array_record), then every image under ``folder`` (recursively). A random subset of at most
    ``max_images`` (deterministic from ``seed``) is decoded and resized; None keeps them all.

    Args:
      size: output ``(height, width)``, or an int for squares.
      max_images: cap on the number of textures kept in memory; None: all (DRAEM's recipe:
        5,640 images, 1.1 GB as uint8 at 256 x 256).
      data_dir: TFDS data directory (None: the TFDS default, ``~/tensorflow_datasets``).
      folder: folder of texture images, e.g. the extracted ``dtd/images``.
      split: TFDS split(s): ``'train'``, ``'validation'``, ``'test'``, ``'+'``-joined names, or
        ``'all'`` (the whole dataset, as DRAEM uses).
      use_tfds: set False to skip the TFDS lookup.
      seed: seed of the subset choice.
      resize: ``'pil'`` or ``'cv2'`` (OpenCV's bilinear, as DRAEM; see ``resize_image``).
      dtype: ``'float32'`` (values in [0, 1]) or ``'uint8'`` (a quarter of the memory).

    Returns:
      ``[S, H, W, 3]`` textures of ``dtype``, or None when no source is available.
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}.")
    size = as_hw(size)
    rng = np.random.default_rng(seed)
    images = _from_tfds(data_dir, split, size, max_images, rng, resize) if use_tfds else None
    if images is None and folder is not None:
        images = _from_folder(folder, size, max_images, rng, resize)
    if images is None:
        logger.info(
            "Anomaly sources: no prepared TFDS dtd%s; falling back to Perlin-noise textures.",
            "" if folder is None else f" and no images under {folder}",
        )
        return None
    if dtype == "uint8":
        return images
    return images.astype(np.float32) / 255.0


def dtd_texture_bank(
    *,
    size: Size,
    bank_size: int,
    refresh_every: int,
    data_dir: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    split: str = "train",
    use_tfds: bool = True,
    seed: int = 0,
    resize: str = "pil",
    required: bool = False,
) -> TextureBank | None:
    """A :class:`~sspcab_jax.data.texture_bank.TextureBank` over every DTD image.

    Looks where :func:`load_anomaly_sources` looks (TFDS ``dtd`` under ``data_dir``, then the
    images under ``folder``) but decodes nothing yet: banks of ``bank_size`` images are read
    when training reaches them.

    Args:
      size: texture ``(height, width)``, or an int for squares.
      bank_size: images per bank.
      refresh_every: steps between refreshes.
      data_dir: TFDS data directory.
      folder: folder of texture images, e.g. the extracted ``dtd/images``.
      split: TFDS split(s), as :func:`load_anomaly_sources`.
      use_tfds: set False to skip the TFDS lookup.
      seed: the run's seed (which images each bank holds).
      resize: ``'pil'`` or ``'cv2'``.
      required: raise :class:`DatasetNotFoundError` with :data:`DTD_INSTRUCTIONS` instead of
        returning None when DTD is missing.

    Returns:
      The bank, or None when no image was found (and ``required`` is False).
    """
    kwargs = dict(
        bank_size=bank_size, refresh_every=refresh_every, size=size, resize=resize, seed=seed
    )
    sources = tfds_dtd_sources(data_dir, split) if use_tfds else None
    bank = tfds_bank(sources, **kwargs) if sources else None
    if bank is None and folder is not None:
        bank = folder_bank(folder, **kwargs)
    if bank is not None:
        logger.info(
            "Anomaly sources: %d DTD images, a bank of %d re-drawn every %d steps.",
            bank.count,
            bank_size,
            refresh_every,
        )
    elif required:
        raise DatasetNotFoundError(f"DTD not found under {folder or data_dir}.\n{DTD_INSTRUCTIONS}")
    return bank


def require_anomaly_sources(**kwargs) -> np.ndarray:
    """:func:`load_anomaly_sources`, but a missing DTD is an error, not a Perlin fallback.

    Args:
      **kwargs: as :func:`load_anomaly_sources`.

    Returns:
      ``[S, H, W, 3]`` textures.

    Raises:
      DatasetNotFoundError: neither TFDS ``dtd`` nor the folder has images; the message gives
        the download and placement commands.
    """
    images = load_anomaly_sources(**kwargs)
    if images is None:
        where = []
        if kwargs.get("use_tfds", True):
            where.append(f"TFDS dtd under {kwargs.get('data_dir') or '~/tensorflow_datasets'}")
        if kwargs.get("folder") is not None:
            where.append(f"images under {kwargs['folder']}")
        raise DatasetNotFoundError(
            f"DTD not found (looked for: {', '.join(where) or 'nothing'}).\n{DTD_INSTRUCTIONS}"
        )
    return images
