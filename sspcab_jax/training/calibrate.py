"""Calibration of a trained state: thresholds from held-out normals, verdict metrics on the test.

The thresholds come from the validation share of the normal training images only
(``data.val_fraction``, never trained on); the test split is scored afterwards at those
thresholds, next to the threshold-free AUROC / AP / AUPRO. See ``docs/detector.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from flax import linen as nn

from sspcab_jax.detector import Calibration, calibrate_from_normals
from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.state import TrainState

if TYPE_CHECKING:
    from sspcab_jax.training.tasks import Task

logger = logging.getLogger(__name__)

VERDICT_METRICS = (
    "image_precision",
    "image_recall",
    "image_f1",
    "image_false_alarm_rate",
    "pixel_f1",
)


def false_alarm_rate(config) -> float:
    """``config.calibration.false_alarm_rate`` (0.01 for configs written before it existed)."""
    return float(config.get("calibration", {}).get("false_alarm_rate", 0.01))


def calibrate(
    task: Task, model: nn.Module, state: TrainState, val_source: Sequence | None
) -> Calibration:
    """Thresholds at ``calibration.false_alarm_rate`` from normal validation images.

    Args:
      task: the run's task.
      model: its single-device module.
      state: host or single-device state.
      val_source: the held-out normal images, or None / empty.

    Returns:
      The calibration; unavailable (with a note saying why) without validation images.
    """
    if is_video(task.config):
        reason = "video runs are scored per frame with video_eval; no image thresholds"
    elif val_source is None or not len(val_source):
        reason = "no validation images: data.val_fraction = 0 held none out"
    else:
        outputs = evaluation.predict(task, model, state, val_source)
        rate = false_alarm_rate(task.config)
        return calibrate_from_normals(outputs["score"], outputs["anomaly_map"], rate)
    logger.warning("calibration unavailable (%s); predictions will have no verdicts", reason)
    return Calibration.unavailable(reason)


def binary_scores(predicted, truth) -> dict[str, float]:
    """Precision, recall, F1 and false-alarm rate of boolean verdicts against ground truth.

    Args:
      predicted: bool verdicts (any shape).
      truth: bool ground truth, same shape.

    Returns:
      ``{'precision', 'recall', 'f1', 'false_alarm_rate'}``; NaN where undefined (no flagged
      item, no anomaly, no normal item).
    """
    predicted = np.asarray(predicted, bool).reshape(-1)
    truth = np.asarray(truth, bool).reshape(-1)
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    tn = int(np.sum(~predicted & ~truth))
    nan = math.nan
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else nan
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else nan,
    }


def verdict_metrics(outputs: dict[str, np.ndarray], calibration: Calibration) -> dict[str, float]:
    """Test metrics at the calibrated thresholds (empty without thresholds).

    Args:
      outputs: :func:`evaluation.predict` of the test split (``score``, ``anomaly_map``
        ``[N, H, W]``, ``label``, optionally ``mask``).
      calibration: the run's calibration.

    Returns:
      ``image_precision``, ``image_recall``, ``image_f1``, ``image_false_alarm_rate`` and
      ``pixel_f1`` (NaN without ground-truth masks).
    """
    if not calibration.available:
        return {}
    image = binary_scores(calibration.is_anomalous(outputs["score"]), outputs["label"] > 0)
    result = {f"image_{k}": v for k, v in image.items()}
    pixel_f1 = math.nan
    if "mask" in outputs and outputs["mask"].any():
        truth = outputs["mask"] >= 0.5
        pixel_f1 = binary_scores(calibration.defect_mask(outputs["anomaly_map"]), truth)["f1"]
    result["pixel_f1"] = pixel_f1
    return result


def calibrate_run(
    task: Task,
    model: nn.Module,
    state: TrainState,
    val_source: Sequence | None,
    test_source: Sequence,
) -> tuple[Calibration, dict[str, float]]:
    """:func:`calibrate` on the validation share, then :func:`verdict_metrics` on the test."""
    calibration = calibrate(task, model, state, val_source)
    if not calibration.available:
        return calibration, {}
    outputs = evaluation.predict(task, model, state, test_source)
    return calibration, verdict_metrics(outputs, calibration)


def format_verdicts(values: dict[str, float], calibration: Calibration) -> str:
    """Markdown table of the verdict metrics (in %) with the thresholds they use."""
    lines = [
        f"Verdicts at the calibrated thresholds (image > {calibration.image_threshold:.6g}, "
        f"pixel > {calibration.pixel_threshold:.6g}; {calibration.source}, "
        f"{calibration.num_images} validation images):",
        "| metric | value |",
        "|---|---:|",
    ]
    for name in VERDICT_METRICS:
        value = values.get(name, math.nan)
        lines.append(f"| {name} | {'—' if not math.isfinite(value) else f'{100 * value:.1f}'} |")
    return "\n".join(lines)
