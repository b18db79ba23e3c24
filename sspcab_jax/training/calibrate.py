"""Calibration of a trained state: thresholds from validation images, verdicts on the test.

The thresholds come from the validation share of the normal training images
(``data.val_fraction``, never trained on), or from a labelled validation folder
(``data.val_dir``), never from the test split; the test split is scored afterwards at those
thresholds, next to the threshold-free AUROC / AP / AUPRO. A synthetic-recall estimate and a
plain warning when the model looks weak complete the summary. See ``docs/detector.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flax import linen as nn

from sspcab_jax.detector import Calibration, calibrate_from_labelled, calibrate_from_normals
from sspcab_jax.training import evaluation
from sspcab_jax.training.calibrate_tiled import tiled_predict
from sspcab_jax.training.data_setup import Subset, build_labelled_validation, is_video
from sspcab_jax.training.state import TrainState
from sspcab_jax.training.synthetic_recall import recall_estimate

if TYPE_CHECKING:
    from sspcab_jax.training.tasks import Task

logger = logging.getLogger(__name__)

# ``(tile_size, tile_overlap)``; tile_size None means resized to the model's input.
Tiling = tuple[Any, int]

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
    task: Task,
    model: nn.Module,
    state: TrainState,
    val_source: Sequence | None,
    labelled: Sequence | None = None,
    *,
    sources: Any = None,
    tiling: Tiling = (None, 0),
    step: int | None = None,
) -> Calibration:
    """Thresholds from validation images, with the synthetic-recall estimate.

    Args:
      task: the run's task.
      model: its single-device module.
      state: host or single-device state.
      val_source: the held-out normal images, or None / empty.
      labelled: the labelled validation folder (``data.val_dir``), or None: F1-optimal
        thresholds (the false-alarm rule where it holds no anomalies) instead of the
        false-alarm rule on ``val_source``.
      sources: the run's anomaly-source textures (None: Perlin) for the estimate.
      tiling: ``(tile_size, tile_overlap)`` to score with (``tile_size`` None: resized to the
        model's input as in evaluation); tiled scores are on another scale.
      step: training step of ``state``, recorded.

    Returns:
      The calibration; unavailable (with a note saying why) without validation images.
    """
    tile_size, overlap = tiling
    recorded = dict(
        tile_size=None if tile_size is None else list(_hw(tile_size)),
        tile_overlap=None if tile_size is None else int(overlap),
        checkpoint_step=step,
    )
    rate = false_alarm_rate(task.config)
    if is_video(task.config):
        reason = "video runs are scored per frame with video_eval; no image thresholds"
    elif labelled is not None and len(labelled):
        out = _scores(task, model, state, labelled, tiling)
        masks = out.get("mask", np.zeros_like(out["anomaly_map"]))
        cal = calibrate_from_labelled(out["score"], out["label"], out["anomaly_map"], masks, rate)
        normals = val_source if val_source is not None and len(val_source) else None
        if normals is None:  # the folder's good images then carry the estimate
            normals = Subset(labelled, np.flatnonzero(out["label"] == 0))
        return _with_estimate(task, model, state, cal, normals, sources, recorded)
    elif val_source is None or not len(val_source):
        reason = (
            "no validation images: data.val_fraction = 0 held none out and data.val_dir is not set"
        )
    else:
        out = _scores(task, model, state, val_source, tiling)
        cal = calibrate_from_normals(out["score"], out["anomaly_map"], rate)
        return _with_estimate(task, model, state, cal, val_source, sources, recorded)
    logger.warning("calibration unavailable (%s); predictions will have no verdicts", reason)
    return dataclasses.replace(Calibration.unavailable(reason), **recorded)


def _with_estimate(task, model, state, cal, normals, sources, recorded) -> Calibration:
    estimate = None
    if recorded["tile_size"] is None:  # synthetic anomalies are made at the model's input size
        estimate = recall_estimate(task, model, state, cal, normals, sources)
    return dataclasses.replace(cal, synthetic_recall_estimate=estimate, **recorded)


def _hw(size) -> tuple[int, int]:
    return (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))


def _scores(task, model, state, source: Sequence, tiling: Tiling) -> dict[str, np.ndarray]:
    """:func:`evaluation.predict` of ``source``, or its tiled scores at native resolution."""
    if tiling[0] is None:
        return evaluation.predict(task, model, state, source)
    return tiled_predict(task, model, state, source, tiling)


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
    **kwargs,
) -> tuple[Calibration, dict[str, float]]:
    """:func:`calibrate` on the validation images, then :func:`verdict_metrics` on the test.

    The labelled validation folder ``data.val_dir`` is read here when the config sets it;
    ``kwargs`` go to :func:`calibrate` (``sources``, ``tiling``, ``step``). The test split is
    scored only after the thresholds are fixed, the same way (tiled or not) as they were made.
    """
    labelled = build_labelled_validation(task.config)
    calibration = calibrate(task, model, state, val_source, labelled, **kwargs)
    return calibration, test_verdicts(task, model, state, test_source, calibration)


def test_verdicts(
    task: Task, model: nn.Module, state: TrainState, test_source: Sequence, calibration
) -> dict[str, float]:
    """:func:`verdict_metrics` of the test split, scored as the calibration was (tiled or not)."""
    if not calibration.available:
        return {}
    outputs = _scores(task, model, state, test_source, calibration.tiling)
    return verdict_metrics(outputs, calibration)


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


# Below these synthetic-recall estimates, or above this false-alarm rate on the same images
# without anomalies, the summary calls the model weak (docs/detector.md).
MIN_IMAGE_RECALL = 0.5
MIN_PIXEL_RECALL = 0.3
MAX_FALSE_ALARM_RATE = 0.25


def format_estimate(calibration: Calibration, task: Task) -> str:
    """One line with the synthetic-recall estimate, or why there is none."""
    estimate = calibration.synthetic_recall_estimate
    if estimate is not None:
        pixel = estimate.get("pixel_recall")
        pixel_text = "—" if pixel is None else f"{100 * pixel:.1f} %"
        return (
            f"Synthetic-anomaly recall at these thresholds (an estimate on "
            f"{estimate['num_images']} validation images with anomalies from the training "
            f"synthesis, not a test on real defects): image {100 * estimate['image_recall']:.1f} "
            f"%, pixel {pixel_text}{_false_alarm_text(estimate)}."
        )
    if is_video(task.config) or not task.synthesizes_anomalies:
        why = f"{task.name} runs synthesise no anomalies"
    elif not calibration.available:
        why = "calibration unavailable"
    elif calibration.tile_size is not None:
        why = "not computed for tiled calibration"
    else:
        why = "no validation image received a synthetic anomaly"
    return f"Synthetic-anomaly recall estimate: not available ({why})."


def _false_alarm_text(estimate: dict) -> str:
    image, pixel = estimate.get("image_false_alarm_rate"), estimate.get("pixel_false_alarm_rate")
    if image is None or pixel is None:
        return ""
    return (
        f"; without anomalies {100 * image:.1f} % of images, {100 * pixel:.1f} % of pixels flagged"
    )


def weak_model_warning(calibration: Calibration, task: Task) -> str | None:
    """One or two plain lines when the model looks weak, else None.

    Weak: calibration unavailable (image runs), a synthetic-recall estimate below
    :data:`MIN_IMAGE_RECALL` (image) or :data:`MIN_PIXEL_RECALL` (pixel), or more than
    :data:`MAX_FALSE_ALARM_RATE` of the estimate's images (or pixels) flagged without anomalies.
    """
    if is_video(task.config):
        return None  # video runs are judged by video_eval's metrics, never calibrated
    if not calibration.available:
        return (
            f"WARNING: calibration unavailable ({calibration.note}): no verdicts, and nothing "
            "says how well this model finds anomalies. Hold out normals (data.val_fraction > 0) "
            "or set data.val_dir, then run `python -m train.calibrate --workdir=<run>`."
        )
    estimate = calibration.synthetic_recall_estimate or {}

    def below(name: str, limit: float) -> bool:
        value = estimate.get(name)
        return value is not None and value < limit

    def above(name: str) -> bool:
        value = estimate.get(name)
        return value is not None and value > MAX_FALSE_ALARM_RATE

    problems = []
    if below("image_recall", MIN_IMAGE_RECALL) or below("pixel_recall", MIN_PIXEL_RECALL):
        pixel = estimate.get("pixel_recall")
        problems.append(
            f"finds only {100 * estimate['image_recall']:.0f} % of synthetic anomalous images"
            + ("" if pixel is None else f" and {100 * pixel:.0f} % of their defect pixels")
            + f" (wanted >= {100 * MIN_IMAGE_RECALL:.0f} % / >= {100 * MIN_PIXEL_RECALL:.0f} %)"
        )
    if above("image_false_alarm_rate") or above("pixel_false_alarm_rate"):
        problems.append(
            f"flags {100 * estimate['image_false_alarm_rate']:.0f} % of normal validation images "
            f"and {100 * estimate['pixel_false_alarm_rate']:.0f} % of their pixels (wanted <= "
            f"{100 * MAX_FALSE_ALARM_RATE:.0f} %)"
        )
    if not problems:
        return None
    return (
        f"WARNING: this model looks weak: at its thresholds it {'; it '.join(problems)}.\n"
        f"Do not trust its verdicts yet; {task.stronger_recipe()}."
    )


def calibration_summary(calibration: Calibration, verdicts: dict[str, float], task: Task) -> str:
    """What a run prints after its metrics: verdicts, the estimate and any weak-model warning."""
    lines = []
    if calibration.available:
        lines += [format_verdicts(verdicts, calibration), format_estimate(calibration, task)]
    elif not is_video(task.config):
        lines.append(f"calibration unavailable: {calibration.note}")
    warning = weak_model_warning(calibration, task)
    if warning:
        lines.append(warning)
    return "\n".join(lines)
