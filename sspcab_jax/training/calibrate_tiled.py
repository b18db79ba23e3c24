"""Scores of a source through a tiled :class:`~sspcab_jax.detector.Detector`, for calibration.

A tiled detector's maps and scores are on another scale than resized ones (the network sees
tiles at a finer resolution), so its thresholds must come from tiled scores of the validation
images at their own resolution: this is what ``train.calibrate --tile_size`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flax import linen as nn

from sspcab_jax.detector import Detector
from sspcab_jax.training.state import TrainState

if TYPE_CHECKING:
    from sspcab_jax.training.tasks import Task


def tiled_detector(task: Task, model: nn.Module, state: TrainState, tiling) -> Detector:
    """The uncalibrated detector of ``state`` with ``tiling = (tile_size, tile_overlap)``."""
    shape = task.input_shape()
    if len(shape) != 4:
        raise ValueError(f"tiling needs an image model; this run's input is {shape}.")
    return Detector.from_eval_step(
        task.scoring_step(model),
        state,
        None,
        tuple(shape[1:3]),
        channels=shape[-1],
        score_fn=task.image_score_fn(),
        input_channel_order=task.config.data.get("channel_order", "rgb"),
        tile_size=tiling[0],
        tile_overlap=tiling[1],
        batch_size=task.config.data.eval_batch_size,
    )


def tiled_predict(
    task: Task, model: nn.Module, state: TrainState, source: Sequence, tiling
) -> dict[str, Any]:
    """Tiled scores of every image of ``source`` at its own resolution.

    Args:
      task: the run's task.
      model: its single-device module.
      state: host or single-device state.
      source: examples with ``image`` ``[H, W, 3]`` (all of one size) and optionally
        ``label`` and ``mask`` ``[H, W, 1]``.
      tiling: ``(tile_size, tile_overlap)``.

    Returns:
      As :func:`sspcab_jax.training.evaluation.predict`: ``score [N]``, ``anomaly_map
      [N, H, W]``, ``label [N]`` and ``mask [N, H, W]`` in {0, 1} when the source has them.

    Raises:
      ValueError: the images differ in size (thresholds need one pixel scale).
    """
    examples = [source[i] for i in range(len(source))]
    sizes = sorted({tuple(e["image"].shape[:2]) for e in examples})
    if len(sizes) > 1:
        raise ValueError(
            f"tiled calibration needs validation images of one size, got {sizes}: resize them "
            "to the camera's size or calibrate without --tile_size."
        )
    prediction = tiled_detector(task, model, state, tiling)([e["image"] for e in examples])
    out: dict[str, Any] = {
        "score": np.asarray(prediction.score, np.float32),
        "anomaly_map": np.stack(prediction.anomaly_map),
    }
    if examples and "label" in examples[0]:
        out["label"] = np.array([e["label"] for e in examples])
    if examples and "mask" in examples[0]:
        # Masks are {0, 255} (or {0, 1}) uint8 [H, W, 1].
        out["mask"] = np.stack([np.asarray(e["mask"])[..., 0] > 0 for e in examples])
    return out
