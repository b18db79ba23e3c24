"""Synthetic-recall estimate: how many training-style anomalies the calibrated thresholds catch.

Normal validation images get anomalies pasted in by the run's own training synthesis (the same
function and ``config.synthesis``, every sample made anomalous, one fixed key per run), are
scored like any image, and the share caught at the calibrated thresholds is reported. It is an
estimate on synthetic anomalies, not a test result: real defects may be easier or harder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import linen as nn

from sspcab_jax import data
from sspcab_jax.detector import Calibration, synthetic_recall
from sspcab_jax.training import evaluation
from sspcab_jax.training.state import TrainState

if TYPE_CHECKING:
    from sspcab_jax.training.tasks import Task

# Stream of the estimate's synthesis, apart from the training synthesis and the data order.
_ESTIMATE_STREAM = 11


def estimate_key(seed: int) -> jax.Array:
    """The fixed key of a run's estimate (the same for every calibration of the run)."""
    return jax.random.fold_in(jax.random.key(seed), _ESTIMATE_STREAM)


def score_synthetic(
    task: Task, model: nn.Module, state: TrainState, source: Sequence, sources: Any
) -> dict[str, np.ndarray] | None:
    """Scores ``source``'s images with training-style anomalies pasted in.

    Args:
      task: the run's task.
      model: its single-device module.
      state: host or single-device state.
      source: normal images (examples with ``image``).
      sources: the run's anomaly-source textures ``[S, H, W, 3]``, a texture bank (its first
        bank is used) or None (Perlin).

    Returns:
      ``{'score' [M], 'anomaly_map' [M, H, W], 'mask' [M, H, W]}`` of the ``M`` images whose
      synthesised mask is not empty, plus ``clean_score [N]`` and ``clean_map [N, H, W]`` of
      all ``N`` images as they are; None when the task synthesises no anomalies.
    """
    if not task.synthesizes_anomalies or not len(source):
        return None
    if isinstance(sources, data.TextureBank):
        sources = sources.load(0)  # a bank of the run's own draws, the same at every call
    step = jax.jit(task.scoring_step(model))
    synthesize = jax.jit(task.synthesize_anomalies)
    keys = jax.random.split(estimate_key(task.config.seed), len(source))
    names = ("score", "anomaly_map", "mask", "clean_score", "clean_map")
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    start = 0
    for batch in evaluation.config_batches(task.config, source):
        # The train step synthesises on model inputs (after the channel flip): so does this.
        images = np.asarray(task.to_model_input(batch["image"]), np.float32)
        stop = start + images.shape[0]
        synth = synthesize(keys[start:stop], images, sources)
        start = stop
        result = step(state, synth["augmented"])
        kept = np.asarray(synth["has_anomaly"]) > 0
        out["score"].append(np.asarray(result["score"])[kept])
        out["anomaly_map"].append(np.asarray(result["anomaly_map"])[kept])
        out["mask"].append(np.asarray(synth["mask"])[kept, ..., 0])
        clean = step(state, images)
        out["clean_score"].append(np.asarray(clean["score"]))
        out["clean_map"].append(np.asarray(clean["anomaly_map"]))
    return {k: np.concatenate(v) for k, v in out.items()}


def recall_estimate(
    task: Task,
    model: nn.Module,
    state: TrainState,
    calibration: Calibration,
    source: Sequence | None,
    sources: Any,
) -> dict[str, Any] | None:
    """:func:`~sspcab_jax.detector.synthetic_recall` of :func:`score_synthetic`'s images.

    Returns:
      ``{'image_recall', 'pixel_recall', 'num_images'}`` plus, on the same images without
      anomalies, ``image_false_alarm_rate`` (share flagged) and ``pixel_false_alarm_rate``
      (share of pixels flagged): recall alone would praise a model that flags everything.
      None without thresholds, without images, or for a task that synthesises no anomalies.
    """
    if not calibration.available or source is None:
        return None
    scored = score_synthetic(task, model, state, source, sources)
    if scored is None or not scored["score"].size:
        return None
    result = synthetic_recall(calibration, scored["score"], scored["anomaly_map"], scored["mask"])
    result["image_false_alarm_rate"] = float(
        np.mean(calibration.is_anomalous(scored["clean_score"]))
    )
    result["pixel_false_alarm_rate"] = float(np.mean(calibration.defect_mask(scored["clean_map"])))
    return result
