"""The model's anomaly map fused with local-statistics z-scores, both on a normal-image scale.

A trained discriminator finds what its synthetic anomalies taught it; the learning-free
reference (:mod:`sspcab_jax.baselines`: per-pixel z-scores of the 7x7 local mean and standard
deviation against the training images) finds what changes local statistics (creases, speckle,
stains) and nothing else. Their errors differ, so the fused map

    fused = (model_map - model_centre) / model_scale + (local_map - local_centre) / local_scale

puts each on the scale of normal images first: the centre is the median of that map's pixels
over the held-out normal validation images and the scale the distance from it to their 99th
percentile. Neither map can then dominate by its units alone, and no weight is tuned. The image
score is the model's own image-score rule applied to the fused map. Everything here is plain
JAX, so a fused eval step jits, tiles and exports like the model's own (the statistics travel as
arrays). Measurements: ``docs/recipe.md``, "Fusing local statistics".

    fusion = fit_local_fusion([train_images], [val_images], val_model_maps)
    step = fuse_eval_step(eval_step, fusion, score_fn)      # (state, images) -> fused outputs
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sspcab_jax.baselines import local_features as local_features_numpy

logger = logging.getLogger(__name__)

FILE_NAME = "local_statistics.npz"
NORMAL_QUANTILE = 0.99
_ARRAYS = ("mean", "std", "scales")


class FusionError(ValueError):
    """A local-statistics file that is missing, damaged or does not fit the model."""


class LocalFusion(NamedTuple):
    """Fitted statistics of the fused map (a pytree of arrays: jit and export take it whole).

    Attributes:
      mean: ``float32 [H, W, 2C]`` per-pixel mean of the local features over training images.
      std: ``float32 [H, W, 2C]`` their standard deviation (floored at 1e-3).
      scales: ``float32 [4]``: model centre, model scale, local centre, local scale.
    """

    mean: Any
    std: Any
    scales: Any

    @property
    def window(self) -> int:
        """The neighbourhood side the features use (fixed: the baseline's 7)."""
        return 7


def local_features(images: jax.Array, window: int = 7) -> jax.Array:
    """Local mean and standard deviation of each channel, borders mirrored.

    Args:
      images: ``[B, H, W, C]`` float images.
      window: odd neighbourhood side.

    Returns:
      ``float32 [B, H, W, 2C]``: the C local means, then the C local standard deviations
      (the mirroring repeats the edge pixel, ``d c b a | a b c d``, as SciPy's ``'reflect'``).
    """
    x = jnp.asarray(images, jnp.float32)
    half = window // 2
    padded = jnp.pad(x, ((0, 0), (half, half), (half, half), (0, 0)), mode="symmetric")

    def box_mean(values):
        total = jax.lax.reduce_window(
            values, 0.0, jax.lax.add, (1, window, window, 1), (1, 1, 1, 1), "VALID"
        )
        return total / (window * window)

    mean = box_mean(padded)
    std = jnp.sqrt(jnp.maximum(box_mean(padded * padded) - mean * mean, 0.0))
    return jnp.concatenate([mean, std], axis=-1)


def local_map(fusion: LocalFusion, images: jax.Array) -> jax.Array:
    """``[B, H, W]``: each pixel's largest absolute z-score over its local features."""
    features = local_features(images, fusion.window)
    if features.shape[1:] != tuple(np.shape(fusion.mean)):
        raise FusionError(
            f"the local statistics were fitted on {tuple(np.shape(fusion.mean))} features but "
            f"these images give {features.shape[1:]}: refit them at the model's input size."
        )
    return jnp.max(jnp.abs((features - fusion.mean) / fusion.std), axis=-1)


def fused_map(fusion: LocalFusion, model_map: jax.Array, images: jax.Array) -> jax.Array:
    """``[B, H, W]`` fused map of a model map ``[B, H, W]`` and its input ``images``."""
    s = jnp.asarray(fusion.scales, jnp.float32)
    model_part = (model_map.astype(jnp.float32) - s[0]) / s[1]
    return model_part + (local_map(fusion, images) - s[2]) / s[3]


def fuse_eval_step(
    eval_step: Callable[[Any, jax.Array], Mapping[str, Any]],
    fusion: LocalFusion,
    score_fn: Callable[[jax.Array], jax.Array],
) -> Callable[[Any, jax.Array], dict[str, Any]]:
    """An eval step whose ``anomaly_map`` and ``score`` are the fused ones.

    Args:
      eval_step: ``(state, images [B, H, W, C]) -> {'anomaly_map' [B, H, W], 'score' [B], ...}``.
      fusion: the fitted statistics.
      score_fn: the model's image-score rule ``[B, H, W] -> [B]``.

    Returns:
      The same signature; the model's own map is kept as ``'model_anomaly_map'``.
    """

    def step(state, images):
        out = dict(eval_step(state, images))
        fused = fused_map(fusion, out["anomaly_map"], images)
        out["model_anomaly_map"] = out["anomaly_map"]
        out["anomaly_map"], out["score"] = fused, score_fn(fused)
        return out

    return step


def normal_scale(values, quantile: float = NORMAL_QUANTILE) -> tuple[float, float]:
    """``(median, quantile - median)`` of the values; the spread is never 0."""
    flat = np.asarray(values, np.float64).ravel()
    centre = float(np.median(flat))
    spread = float(np.quantile(flat, quantile)) - centre
    if not spread > 0:  # a constant map: fall back to the full range, then to 1
        spread = float(flat.max() - centre) or 1.0
    return centre, spread


def fit_local_fusion(
    train_batches: Iterable[np.ndarray],
    val_batches: Iterable[np.ndarray],
    val_model_maps: np.ndarray,
) -> LocalFusion:
    """Fits the statistics on normal training images and the scales on validation images.

    Batches are read once each, so a large training folder is never held in memory whole: the
    per-pixel mean and standard deviation (over images, ``ddof=0``, floored at 1e-3 as in
    :func:`sspcab_jax.baselines.fit_local_statistics`) come from float64 sums.

    Args:
      train_batches: ``[B, H, W, C]`` batches of normal training images (model inputs), two
        images or more in all.
      val_batches: ``[B, H, W, C]`` batches of held-out normal images, never trained on.
      val_model_maps: ``[M, H, W]`` the model's anomaly maps of the validation images, in order.

    Returns:
      The fitted :class:`LocalFusion` (NumPy arrays).
    """
    count, total, squares = 0, 0.0, 0.0
    for batch in train_batches:
        features = local_features_numpy(np.asarray(batch, np.float64), window=7)
        count += len(features)
        total = total + features.sum(axis=0)
        squares = squares + (features**2).sum(axis=0)
    if count < 2:
        raise ValueError(f"fitting local statistics needs 2 training images or more, got {count}.")
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(squares / count - mean**2, 0.0)), 1e-3)
    partial = LocalFusion(mean.astype("f4"), std.astype("f4"), np.array([0, 1, 0, 1], "f4"))
    local = np.concatenate([np.asarray(local_map(partial, jnp.asarray(b))) for b in val_batches])
    scales = (*normal_scale(val_model_maps), *normal_scale(local))
    return partial._replace(scales=np.asarray(scales, np.float32))


def save_fusion(
    fusion: LocalFusion, directory: str | os.PathLike, step: int | None = None
) -> pathlib.Path:
    """Writes ``<directory>/local_statistics.npz`` atomically (a zip: each array has a CRC-32).

    Args:
      fusion: the fitted statistics.
      directory: the run's directory.
      step: the checkpoint step whose model maps set the scales (None: not recorded).
    """
    arrays = {name: np.asarray(getattr(fusion, name), np.float32) for name in _ARRAYS}
    buffer = io.BytesIO()
    np.savez(buffer, checkpoint_step=np.int64(-1 if step is None else step), **arrays)
    path = pathlib.Path(directory) / FILE_NAME
    partial = path.with_name(f".{FILE_NAME}.partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, path)
    return path


def load_fusion(directory: str | os.PathLike, step: int | None = None) -> LocalFusion:
    """Reads and verifies what :func:`save_fusion` wrote.

    Args:
      directory: the run's directory.
      step: the restored checkpoint step; a fusion fitted on another step's maps is used with a
        warning (its model scale belongs to other weights). None: not checked.

    Raises:
      FusionError: the file is missing, or damaged (unreadable, a CRC-32 mismatch, an array
        missing or not finite).
    """
    path = pathlib.Path(directory) / FILE_NAME
    refit = f"refit it with `python -m train.calibrate --workdir={directory}`"
    if not path.is_file():
        raise FusionError(f"{path} is missing but the run fuses local statistics: {refit}.")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAYS}
            fitted_on = int(stored["checkpoint_step"])
    except Exception as error:  # zip, CRC, header or key errors all mean a damaged file
        raise FusionError(f"{path} is damaged ({type(error).__name__}): {refit}.") from None
    if not all(np.isfinite(a).all() for a in arrays.values()) or arrays["scales"].shape != (4,):
        raise FusionError(f"{path} is damaged (values not finite or misshapen): {refit}.")
    if step is not None and fitted_on >= 0 and fitted_on != step:
        logger.warning(
            "%s was fitted on the maps of step %d, not the restored step %d; %s.",
            *(path, fitted_on, step, refit.replace("refit it", "refit it for this step")),
        )
    return LocalFusion(**arrays)
