"""Datasets named by an experiment config: train/test sources and anomaly-source textures."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from sspcab_jax import data
from sspcab_jax.data.bundled_textures import bundled_texture_pool

logger = logging.getLogger(__name__)

IMAGE_DATASETS = ("synthetic", "mvtec", "folder")
VIDEO_DATASETS = ("synthetic_video", "avenue", "shanghaitech")
DATASETS = IMAGE_DATASETS + VIDEO_DATASETS


def is_video(config: ml_collections.ConfigDict) -> bool:
    """Whether ``config.data.dataset`` is a video dataset."""
    return config.data.dataset in VIDEO_DATASETS


def synthetic_root(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Where the embedded dataset lives: ``config.data.root`` or ``<workdir>/data``."""
    return pathlib.Path(config.data.root or pathlib.Path(workdir) / "data")


# Stream of the validation split, apart from the data order and the model's streams.
_VALIDATION_STREAM = 7


class Subset(Sequence):
    """The examples of ``source`` at ``indices``, in that order."""

    def __init__(self, source: Sequence, indices: Sequence[int]):
        self.source, self.indices = source, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        return self.source[self.indices[index]]


def validation_split(size: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, validation indices)`` of ``size`` training images, both sorted.

    ``max(1, round(fraction * size))`` images (none for ``fraction == 0``) are drawn
    without replacement, deterministically from ``seed``.

    Raises:
      ValueError: the share would leave no image to train on.
    """
    if fraction == 0:
        return np.arange(size), np.arange(0)
    count = max(1, round(fraction * size))
    if count >= size:
        raise ValueError(
            f"config.data.val_fraction={fraction} holds out {count} of {size} training images "
            "and leaves none to train on: lower it (0 disables calibration)."
        )
    order = np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(size)
    return np.sort(order[count:]), np.sort(order[:count])


def build_split_sources(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[Sequence, Sequence | None, Sequence]:
    """``(train, validation, test)``: :func:`build_sources` with the validation share apart.

    The validation images (``config.data.val_fraction`` of the normal training images, see
    :func:`validation_split`) are never in the returned training source. Video datasets and
    configs without the field (runs written before it existed) have no validation source
    (None).
    """
    train, test = _all_sources(config, workdir)
    fraction = config.data.get("val_fraction", 0.0)
    if is_video(config):
        return train, None, test
    train_idx, val_idx = validation_split(len(train), fraction, config.seed)
    if not len(val_idx):
        return train, Subset(train, val_idx), test
    return Subset(train, train_idx), Subset(train, val_idx), test


def labelled_validation_masks(val_dir: str | pathlib.Path) -> pathlib.Path | None:
    """The MVTec-style masks folder of ``val_dir``: its sibling ``ground_truth/``, if present."""
    masks = pathlib.Path(val_dir).parent / "ground_truth"
    return masks if masks.is_dir() else None


def build_labelled_validation(config: ml_collections.ConfigDict) -> Sequence | None:
    """The labelled validation folder ``config.data.val_dir``, or None when it is not set.

    MVTec layout: ``<val_dir>/good/`` holds normal images, every other sub-folder anomalous
    ones; masks are ``<val_dir>/../ground_truth/<defect>/<stem>_mask.png`` (as in an MVTec
    category, where ``val_dir`` would be ``<category>/test``) or ``<stem>_mask.png`` next to
    the image. It is read like a folder dataset's test split (``data.folder_source``).
    """
    val_dir = config.data.get("val_dir", "")
    if not val_dir or is_video(config):
        return None
    skip = config.data.get("skip_corrupt", False)
    masks = labelled_validation_masks(val_dir)
    return data.folder_source(val_dir, "test", mask_dir=masks, skip_corrupt=skip)


def build_sources(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[Sequence, Sequence]:
    """``(train, test)`` of :func:`build_split_sources` (training without the validation share)."""
    train, _, test = build_split_sources(config, workdir)
    return train, test


def _all_sources(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[Sequence, Sequence]:
    """Random-access train and test sources for ``config.data.dataset``.

    The embedded dataset is written (once, deterministically from ``config.seed``) when absent,
    and verified against its manifest when reused.

    Args:
      config: experiment config.
      workdir: the run's directory.

    Returns:
      ``(train_source, test_source)``; examples are dicts with ``image`` ``[H, W, 3]`` uint8,
      ``mask`` ``[H, W, 1]`` and ``label`` (video datasets: see :func:`build_video_sources`).
    """
    d = config.data
    if is_video(config):
        return build_video_sources(config, workdir)
    skip = d.get("skip_corrupt", False)
    if d.dataset == "synthetic":
        root = synthetic_root(config, workdir)
        data.ensure_synthetic_mvtec(root, d.category, seed=config.seed)
        kw = dict(categories=None, skip_corrupt=skip)
        return (
            data.mvtec_source(root, d.category, "train", **kw),
            data.mvtec_source(root, d.category, "test", **kw),
        )
    if d.dataset == "mvtec":
        return (
            data.mvtec_source(d.root, d.category, "train", skip_corrupt=skip),
            data.mvtec_source(d.root, d.category, "test", skip_corrupt=skip),
        )
    if d.dataset == "folder":
        mask_dir = d.mask_dir or None
        return (
            data.folder_source(d.train_dir, "train", skip_corrupt=skip),
            data.folder_source(d.test_dir, "test", mask_dir=mask_dir, skip_corrupt=skip),
        )
    raise ValueError(f"data.dataset must be one of {DATASETS}, got {d.dataset!r}.")


def build_video_sources(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[data.ClipSource, data.ClipSource]:
    """Frame (or clip) sources over the training and test videos of a video dataset.

    Whole frames are resized to ``data.image_size`` squared and decoded once into
    ``data.cache_dir`` (default ``<workdir>/video_cache/<dataset>``). Whole frames, not the
    object crops the paper's RBDC/TBDC suggest (region metrics score boxes, so its model most
    likely reconstructed detector crops): crops need detector weights, which an offline setup
    cannot fetch, while whole frames keep the pipeline self-contained; the auto-encoder turns
    them to grayscale (``autoencoder.channels=1``).
    The embedded ``'synthetic_video'`` set is written (once, deterministically from
    ``config.seed``) to ``data.root`` or ``<workdir>/data``.

    Args:
      config: experiment config.
      workdir: the run's directory.

    Returns:
      ``(train, test)`` :class:`~sspcab_jax.data.ClipSource`; examples have ``image``
      ``uint8 [S, S, 3]`` (``[T, S, S, 3]`` with ``data.clip_length`` T), ``mask`` and ``label``
      of the (last) frame, ``video`` and ``frame_index``. Training takes every
      ``data.frame_stride``-th frame; testing every frame.

    Raises:
      DatasetNotFoundError: the dataset is not at ``data.root`` (the message says how to get it).
    """
    d = config.data
    size = (d.image_size, d.image_size)
    cache = pathlib.Path(d.cache_dir or pathlib.Path(workdir) / "video_cache") / d.dataset
    if d.dataset == "shanghaitech":
        read, root = data.shanghaitech_videos, d.root
    else:
        read, root = data.avenue_videos, d.root
        if d.dataset == "synthetic_video":
            root = synthetic_root(config, workdir)
            data.ensure_synthetic_avenue(root, seed=config.seed, **d.synthetic_video.to_dict())
    if not root:
        how = data.SHANGHAITECH_INSTRUCTIONS if d.dataset == "shanghaitech" else None
        raise data.DatasetNotFoundError(
            f"config.data.root is empty: pass --config.data.root=ROOT for {d.dataset!r}.\n"
            + (how or data.AVENUE_INSTRUCTIONS)
        )
    clip = d.clip_length or None
    train = read(root, "train", size=size, cache_dir=cache / "train")
    test = read(root, "test", size=size, cache_dir=cache / "test")
    return (
        data.ClipSource(train, clip_length=clip, stride=d.frame_stride),
        data.ClipSource(test, clip_length=clip, stride=1),
    )


def build_anomaly_sources(
    config: ml_collections.ConfigDict,
) -> np.ndarray | data.TextureBank | None:
    """DRAEM's anomaly-source textures ``[S, H, W, 3]`` in [0, 1], or None for Perlin textures.

    With ``config.data.texture_bank_size > 0``, DTD (``'auto'`` / ``'dtd'``) is not read at once:
    a :class:`~sspcab_jax.data.TextureBank` over every DTD image is returned instead, re-drawn
    every ``config.data.texture_refresh_every`` steps during training
    (``max_anomaly_sources`` does not apply to it).

    ``config.data.anomaly_sources``: ``'auto'`` tries a prepared TFDS ``dtd``
    (``config.data.dtd_data_dir``, or TFDS's default folder when it holds ``dtd``), then a folder
    of images (``config.data.anomaly_source_dir``), then falls back to Perlin textures;
    ``'bundled'`` uses crops of scikit-image's bundled photographs (offline); ``'perlin'`` forces
    Perlin textures. The log says which was used. ``'dtd'`` (the paper recipe) requires DTD and
    stops with the download instructions when it is missing: no silent fallback.
    ``config.data.max_anomaly_sources`` caps the textures kept (0: all of them, as DRAEM's
    ``data_loader.py`` draws from every DTD image), ``config.data.dtd_split`` picks TFDS splits
    and ``config.data.resize`` the resize method.
    """
    d = config.data
    kind = d.get("anomaly_sources", "auto")
    if kind == "perlin":
        logger.info("anomaly sources: Perlin-noise textures (config.data.anomaly_sources)")
        return None
    if kind == "bundled":
        pool = bundled_texture_pool(d.image_size, seed=config.seed)
        logger.info("anomaly sources: %d crops of scikit-image's bundled photographs", len(pool))
        return pool
    if kind not in ("auto", "dtd"):
        raise ValueError(
            f"config.data.anomaly_sources={kind!r} is invalid: expected 'auto', 'dtd', 'bundled' "
            "or 'perlin'."
        )
    default_dtd = pathlib.Path.home() / "tensorflow_datasets" / "dtd"
    where = dict(
        data_dir=d.dtd_data_dir or None,
        folder=d.anomaly_source_dir or None,
        split=d.get("dtd_split", "train"),
        # Importing TFDS costs seconds: only look where a prepared dtd can be.
        use_tfds=bool(d.dtd_data_dir) or default_dtd.is_dir(),
        seed=config.seed,
        resize=d.get("resize", "pil"),
    )
    if d.get("texture_bank_size", 0) > 0:
        bank = data.dtd_texture_bank(
            size=d.image_size,
            bank_size=d.texture_bank_size,
            refresh_every=d.texture_refresh_every,
            required=kind == "dtd",
            **where,
        )
        if bank is None:
            logger.info("anomaly sources: no DTD found; Perlin-noise textures")
        return bank
    load = data.require_anomaly_sources if kind == "dtd" else data.load_anomaly_sources
    return load(size=d.image_size, max_images=d.max_anomaly_sources or None, **where)
