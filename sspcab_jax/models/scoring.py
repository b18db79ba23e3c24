"""DRAEM's test-time scoring: pixel anomaly map and image score from the discriminator logits.

Follows the official ``test_DRAEM.py`` (softmax map, 21x21 mean filter, max), with anomalib's
plain max (``draem/torch_model.py``) as the alternative image score.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

SCORE_MODES = ("mean_filter", "max")


def anomaly_map(logits: Array) -> Array:
    """Pixel anomaly map: softmax probability of the anomalous class (``test_DRAEM.py``).

    Args:
      logits: ``[B, H, W, 2]``.

    Returns:
      ``[B, H, W]`` float32 in [0, 1].
    """
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1]


def mean_filter(amap: Array, size: int = 21) -> Array:
    """``size x size`` mean filter, stride 1, zero padding ``size // 2`` counted in the mean.

    Matches PyTorch ``avg_pool2d(kernel, 1, padding)`` with ``count_include_pad=True``: border
    windows are divided by ``size**2`` including the padded zeros, as ``test_DRAEM.py`` does.

    Args:
      amap: ``[B, H, W]``.
      size: odd window side.

    Returns:
      ``[B, H, W]`` float32.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}.")
    amap = amap.astype(jnp.float32)
    pad = size // 2
    padded = jnp.pad(amap, ((0, 0), (pad, pad), (pad, pad)))
    summed = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (1, size, size), (1, 1, 1), "VALID")
    return summed / float(size * size)


def image_score(amap: Array, mode: str = "mean_filter", filter_size: int = 21) -> Array:
    """Image anomaly score from a pixel map.

    Args:
      amap: ``[B, H, W]`` pixel anomaly map.
      mode: ``'mean_filter'``: max after a 21x21 mean filter with zero padding counted (official
        ``test_DRAEM.py``); ``'max'``: raw max (anomalib's ``torch_model.py``).
      filter_size: mean-filter side for ``'mean_filter'``.

    Returns:
      ``[B]`` float32 scores.
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"mode must be one of {SCORE_MODES}, got {mode!r}.")
    if amap.ndim != 3:
        raise ValueError(f"image_score expects a [B, H, W] map, got shape {tuple(amap.shape)}.")
    if mode == "mean_filter":
        amap = mean_filter(amap, filter_size)
    return jnp.max(amap.astype(jnp.float32), axis=(1, 2))
