"""Evaluation of a trained state: test-split inference, the field's metrics, the metrics table.

The one evaluation path of the project: the training loop, ``train.evaluate``,
``train.predict`` and ``train.figures`` all call :func:`evaluate` or :func:`predict`, so a
number printed by any of them is computed the same way.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import numpy as np
from flax import linen as nn

from sspcab_jax import data, metrics
from sspcab_jax.training import video_eval
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.state import TrainState

if TYPE_CHECKING:  # the tasks import this module's metric names
    from sspcab_jax.training.tasks import Task

IMAGE_METRICS = metrics.CategoryMetrics._fields
# The names ``config.best_metric`` accepts: what image and video evaluation report.
METRIC_NAMES = IMAGE_METRICS + video_eval.VIDEO_METRICS


def make_eval_fn(task: Task, model: nn.Module) -> video_eval.EvalFn:
    """``(state, images) -> {'anomaly_map' [B, H, W], 'score' [B], 'reconstruction'}``.

    Args:
      task: the run's :class:`~sspcab_jax.training.tasks.Task`.
      model: its module (no ``pmap`` axis).

    Returns:
      A function of a state and a host batch of pipeline images ``[B, ..., 3]``: the task turns
      them into model inputs, then its jitted eval step runs.
    """
    step = jax.jit(task.scoring_step(model))
    return lambda state, images: step(state, task.to_model_input(images))


def config_batches(config, source):
    """``data.eval_batches`` of ``source`` with the config's batch size, resize and mask rule."""
    d = config.data
    return data.eval_batches(
        source,
        batch_size=d.eval_batch_size,
        image_size=d.image_size,
        resize=d.get("resize", "pil"),
        mask_rule=d.get("mask_rule", "nearest"),
    )


def predict(task: Task, model: nn.Module, state: TrainState, source: Sequence) -> dict:
    """Run the model over a finite source of images, in order.

    Args:
      task: the run's task (``config.data.image_size`` and ``eval_batch_size`` are used).
      model: the module (without a ``pmap`` axis).
      state: host or single-device state.
      source: random-access examples with ``image`` (and optionally ``mask``, ``label``).

    Returns:
      ``{'score': [N], 'anomaly_map': [N, H, W], 'label': [N], 'mask': [N, H, W]}`` (label and
      mask only when the source has them).
    """
    eval_fn = make_eval_fn(task, model)
    outputs: dict[str, list[np.ndarray]] = {"score": [], "anomaly_map": [], "label": [], "mask": []}
    for batch in config_batches(task.config, source):
        result = eval_fn(state, batch["image"])
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


def evaluate(
    task: Task,
    model: nn.Module,
    state: TrainState,
    test_source: Sequence,
    scores_path: str | pathlib.Path | None = None,
) -> dict[str, float]:
    """Metrics of a host state on the test source: image metrics, or video metrics.

    Args:
      task: the run's task.
      model: its single-device module.
      state: host or single-device state.
      test_source: the test split (a ``ClipSource`` for video datasets).
      scores_path: where a video run saves its per-frame scores (``frame_scores.npz``), or None.

    Returns:
      A flat dict of floats (NaN where a metric is undefined for the split).
    """
    return evaluate_with_outputs(task, model, state, test_source, scores_path)[0]


def evaluate_with_outputs(
    task: Task,
    model: nn.Module,
    state: TrainState,
    test_source: Sequence,
    scores_path: str | pathlib.Path | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
    """:func:`evaluate`, also returning the test outputs the metrics were computed from.

    Returns:
      ``(metrics, outputs)``: ``outputs`` is :func:`predict`'s result for image runs (reused by
      the run's figures, so the network runs once), None for video runs (their per-frame scores
      go to ``scores_path``).
    """
    if is_video(task.config):
        eval_fn = make_eval_fn(task, model)
        values = video_eval.evaluate_videos(task.config, eval_fn, state, test_source, scores_path)
        return values, None
    outputs = predict(task, model, state, test_source)
    return compute_metrics(outputs), outputs


def results_label(config) -> str:
    """The row name of a run's results table: its category, or the name of its own folder.

    A ``'folder'`` dataset has no category (``data.category`` keeps the default of the
    embedded set): its row is named after the test folder, or the folder above it when that is
    called ``test`` (``DIR/test`` -> ``DIR``'s name), else ``'folder'``.
    """
    d = config.data
    if d.dataset != "folder":
        return d.category
    test_dir = pathlib.Path(d.get("test_dir", "") or "")
    name = test_dir.parent.name if test_dir.name == "test" else test_dir.name
    return name or "folder"


def format_metrics(values: dict[str, float], split: str = "") -> str:
    """Markdown table of final metrics, in % as papers report them.

    Args:
      values: metric name -> value in [0, 1] (NaN shown as a dash).
      split: the row name of an image run (its category).

    Returns:
      The paper's one-row table for image metrics, else a two-column table.
    """
    if set(values) == set(IMAGE_METRICS):
        return metrics.format_markdown_table({split: metrics.CategoryMetrics(**values)})
    lines = ["| metric | value |", "|---|---:|"]
    for name, value in values.items():
        lines.append(f"| {name} | {'—' if not math.isfinite(value) else f'{100 * value:.1f}'} |")
    return "\n".join(lines)
