"""Datasets named by an experiment config: train/test sources and anomaly-source textures."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from sspcab_jax import data

logger = logging.getLogger(__name__)

IMAGE_DATASETS = ("synthetic", "mvtec", "folder")


def synthetic_root(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Where the embedded dataset lives: ``config.data.root`` or ``<workdir>/data``."""
    return pathlib.Path(config.data.root or pathlib.Path(workdir) / "data")


def build_sources(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[Sequence, Sequence]:
    """Random-access train and test sources for ``config.data.dataset``.

    The embedded dataset is written (once, deterministically from ``config.seed``) when absent.

    Args:
      config: experiment config.
      workdir: the run's directory.

    Returns:
      ``(train_source, test_source)``; examples are dicts with ``image`` ``[H, W, 3]`` uint8,
      ``mask`` ``[H, W, 1]`` and ``label``.
    """
    d = config.data
    skip = d.get("skip_corrupt", False)
    if d.dataset == "synthetic":
        root = synthetic_root(config, workdir)
        if not (root / d.category / "train").exists():
            logger.info("writing the embedded dataset to %s", root)
            data.write_synthetic_mvtec(root, categories=(d.category,), seed=config.seed)
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
    raise ValueError(f"data.dataset must be one of {IMAGE_DATASETS}, got {d.dataset!r}.")


def build_anomaly_sources(config: ml_collections.ConfigDict) -> np.ndarray | None:
    """DRAEM's anomaly-source textures ``[S, H, W, 3]`` in [0, 1], or None for Perlin textures.

    Tries a prepared TFDS ``dtd`` (``config.data.dtd_data_dir``), then a folder of images
    (``config.data.anomaly_source_dir``); the log says which was used.
    """
    d = config.data
    return data.load_anomaly_sources(
        size=d.image_size,
        max_images=d.max_anomaly_sources,
        data_dir=d.dtd_data_dir or None,
        folder=d.anomaly_source_dir or None,
        use_tfds=bool(d.dtd_data_dir),
        seed=config.seed,
    )
