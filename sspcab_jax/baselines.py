"""A learning-free reference detector: local statistics z-scored against the training images.

Each pixel is described by the mean and the standard deviation of every channel over the
``window x window`` neighbourhood around it (borders reflected). Fitting stores, per pixel and
per feature, the mean and the standard deviation of that description over the normal training
images. A test pixel's anomaly score is its largest absolute z-score over the features; an
image's score is the largest pixel score. No learning, no synthesis: a trained detector that
localises worse than this has learnt nothing useful about the texture.

    stats = fit_local_statistics(train_images)          # [N, H, W, C] in [0, 1]
    maps, scores = local_statistics_scores(stats, test_images)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage


class LocalStatistics(NamedTuple):
    """Per-pixel statistics of the training images' local features.

    Attributes:
      mean: ``float64 [H, W, 2C]`` mean over the training images of each feature.
      std: ``float64 [H, W, 2C]`` their standard deviation (floored, never 0).
      window: side of the square neighbourhood the features were computed on.
    """

    mean: np.ndarray
    std: np.ndarray
    window: int


def local_features(images: np.ndarray, window: int = 7) -> np.ndarray:
    """Local mean and standard deviation of every channel around every pixel.

    Args:
      images: ``[N, H, W, C]`` images (any real dtype).
      window: odd side of the square neighbourhood; borders are reflected
        (``d c b a | a b c d | d c b a``).

    Returns:
      ``float64 [N, H, W, 2C]``: the C local means, then the C local standard deviations.
    """
    images = np.asarray(images, np.float64)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}.")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}.")
    size = (1, window, window, 1)
    mean = ndimage.uniform_filter(images, size=size, mode="reflect")
    mean_sq = ndimage.uniform_filter(images**2, size=size, mode="reflect")
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    return np.concatenate([mean, std], axis=-1)


def fit_local_statistics(
    train_images: np.ndarray, window: int = 7, min_std: float = 1e-3
) -> LocalStatistics:
    """Per-pixel mean and standard deviation of :func:`local_features` over normal images.

    Args:
      train_images: ``[N, H, W, C]`` normal images, N >= 2.
      window: odd neighbourhood side.
      min_std: floor of the standard deviation, so flat regions do not divide by zero.

    Returns:
      The fitted :class:`LocalStatistics`.
    """
    if len(train_images) < 2:
        raise ValueError("fit_local_statistics needs at least 2 training images.")
    features = local_features(train_images, window)
    return LocalStatistics(features.mean(axis=0), np.maximum(features.std(axis=0), min_std), window)


def local_statistics_scores(
    stats: LocalStatistics, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps and image scores of ``images`` under fitted statistics.

    Args:
      stats: from :func:`fit_local_statistics` on images of the same ``[H, W, C]``.
      images: ``[N, H, W, C]`` test images.

    Returns:
      ``(maps float64 [N, H, W], scores float64 [N])``: the largest absolute z-score over the
      features at each pixel, and the largest pixel of each map.
    """
    features = local_features(images, stats.window)
    if features.shape[1:] != stats.mean.shape:
        raise ValueError(
            f"images give features of shape {features.shape[1:]}, the statistics were fitted on "
            f"{stats.mean.shape}: resize the test images to the training size."
        )
    maps = np.abs((features - stats.mean) / stats.std).max(axis=-1)
    return maps, maps.reshape(len(maps), -1).max(axis=1)
