"""Test-split inference and the field's metrics for a trained state."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import linen as nn

from sspcab_jax import data, metrics
from sspcab_jax.training.state import TrainState
from sspcab_jax.training.steps import autoencoder_eval_step, draem_eval_step


def make_eval_fn(config: ml_collections.ConfigDict, model: nn.Module) -> Any:
    """Jitted ``(state, images [B, H, W, C]) -> {'anomaly_map', 'score', 'reconstruction'}``."""
    if config.model == "draem":
        step = functools.partial(draem_eval_step, model=model, score_mode=config.image_score)
    else:
        step = functools.partial(autoencoder_eval_step, model=model)
    return jax.jit(step)


def to_model_input(images: np.ndarray, config: ml_collections.ConfigDict) -> np.ndarray:
    """Convert RGB batches to the model's channel count (luma for a grayscale auto-encoder)."""
    if config.model == "autoencoder" and config.autoencoder.channels == 1 and images.shape[-1] == 3:
        return images @ np.asarray([0.299, 0.587, 0.114], images.dtype)[:, None]
    return images


def predict(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    state: TrainState,
    source: Sequence,
) -> dict[str, np.ndarray]:
    """Run the model over a finite source, in order.

    Args:
      config: experiment config (``data.image_size``, ``data.eval_batch_size``).
      model: the module (without a ``pmap`` axis).
      state: host or single-device state.
      source: random-access examples with ``image`` (and optionally ``mask``, ``label``).

    Returns:
      ``{'score': [N], 'anomaly_map': [N, H, W], 'label': [N], 'mask': [N, H, W]}`` (label and
      mask only when the source has them).
    """
    eval_fn = make_eval_fn(config, model)
    outputs: dict[str, list[np.ndarray]] = {"score": [], "anomaly_map": [], "label": [], "mask": []}
    for batch in data.eval_batches(
        source, batch_size=config.data.eval_batch_size, image_size=config.data.image_size
    ):
        result = eval_fn(state, to_model_input(batch["image"], config))
        outputs["score"].append(np.asarray(result["score"]))
        outputs["anomaly_map"].append(np.asarray(result["anomaly_map"]))
        if "label" in batch:
            outputs["label"].append(np.asarray(batch["label"]))
        if "mask" in batch:
            mask = np.asarray(batch["mask"])
            outputs["mask"].append(mask[..., 0] if mask.ndim == 4 else mask)
    return {k: np.concatenate(v) for k, v in outputs.items() if v}


def compute_metrics(outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Image AUROC / AP / F1-max and, where masks have defects, pixel AUROC / AP and AUPRO.

    Args:
      outputs: the result of :func:`predict` (needs ``label``; ``mask`` optional).

    Returns:
      A flat dict of floats (NaN where a metric is undefined for this split).
    """
    labels = outputs["label"].astype(np.int64)
    maps = masks = None
    if "mask" in outputs and outputs["mask"].any():
        maps, masks = outputs["anomaly_map"], (outputs["mask"] >= 0.5).astype(np.uint8)
    result = metrics.category_metrics(outputs["score"], labels, maps, masks)
    return {k: float(v) for k, v in result._asdict().items()}
