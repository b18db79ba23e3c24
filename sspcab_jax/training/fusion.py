"""The run's local-statistics fusion (``calibration.fuse_local_statistics``): fit, save, load.

At the end of training the statistics are fitted on the run's own training split and scaled on
its validation split (the images the thresholds are calibrated on), saved as
``<workdir>/local_statistics.npz`` (checksummed), and attached to the task, so that the final
evaluation, the calibration, the figures and every later command (``train.evaluate``,
``train.predict``, ``Detector.from_workdir``, export) score the fused map. See
:mod:`sspcab_jax.detector.local_fusion`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from flax import linen as nn

from sspcab_jax.detector.local_fusion import fit_local_fusion, load_fusion, save_fusion
from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.state import TrainState

if TYPE_CHECKING:
    from sspcab_jax.training.loop import Run
    from sspcab_jax.training.tasks import Task

logger = logging.getLogger(__name__)


def fusion_enabled(config) -> bool:
    """Whether the run fuses local statistics (False for configs written before the field)."""
    wanted = bool(config.get("calibration", {}).get("fuse_local_statistics", False))
    return wanted and not is_video(config)


def _model_inputs(task: Task, source: Sequence) -> Iterator[np.ndarray]:
    """The model-input batches ``[B, H, W, C]`` of ``source``, one at a time."""
    for batch in evaluation.config_batches(task.config, source):
        yield np.asarray(task.to_model_input(batch["image"]), np.float32)


def fit_run_fusion(
    task: Task,
    model: nn.Module,
    state: TrainState,
    train_source: Sequence,
    val_source: Sequence | None,
    workdir: str | os.PathLike | None,
    step: int | None = None,
) -> bool:
    """Fits the fusion of a trained state, attaches it to ``task`` and saves it in ``workdir``.

    Args:
      task: the run's task; its ``local_fusion`` is replaced.
      model: its single-device module.
      state: host or single-device state.
      train_source: the normal training images (the validation share excluded).
      val_source: the held-out normal images; without any, nothing is fitted.
      workdir: where ``local_statistics.npz`` goes (None: not saved, e.g. a non-writing host).
      step: the checkpoint step of ``state``, recorded in the file.

    Returns:
      Whether a fusion was fitted.
    """
    task.local_fusion = None
    if not fusion_enabled(task.config):
        return False
    if val_source is None or not len(val_source) or len(train_source) < 2:
        logger.warning(
            "calibration.fuse_local_statistics needs validation images (data.val_fraction > 0) "
            "and two training images; the model's own map is used"
        )
        return False
    val_maps = evaluation.predict(task, model, state, val_source)["anomaly_map"]
    task.local_fusion = fit_local_fusion(
        _model_inputs(task, train_source), _model_inputs(task, val_source), val_maps
    )
    if workdir is not None:
        logger.info("local statistics written to %s", save_fusion(task.local_fusion, workdir, step))
    return True


def fuse_and_evaluate(run: Run, state: TrainState) -> dict[str, float] | None:
    """With ``calibration.fuse_local_statistics``: fit the run's fusion, then evaluate it.

    Returns:
      The fused test metrics (also written as ``test_fused/*`` scalars; the run's figures then
      draw the fused outputs), or None when the run does not fuse.
    """
    workdir = run.workdir if run.writer else None
    if not fit_run_fusion(
        *(run.task, run.eval_model, state, run.train_source, run.val_source, workdir),
        step=run.total_steps,
    ):
        return None
    fused, run.test_outputs = evaluation.evaluate_with_outputs(
        run.task, run.eval_model, state, run.test_source, None
    )
    if run.writer:
        run.writer.write(run.total_steps, fused, prefix="test_fused")
    return fused


def saved_fusion_expected(config) -> bool:
    """Whether a finished run of ``config`` has a fusion (none is fitted without validation)."""
    return fusion_enabled(config) and config.data.get("val_fraction", 0.0) > 0


def attach_saved_fusion(task: Task, workdir: str | os.PathLike, step: int | None = None) -> Task:
    """Attaches ``<workdir>/local_statistics.npz`` when the run's config fuses; returns ``task``.

    ``step`` is the restored checkpoint's: a fusion fitted on another step's maps gives a warning.

    Raises:
      FusionError: the run fuses but the file is missing or damaged (the message names
        ``train.calibrate``, which refits it).
    """
    expected = saved_fusion_expected(task.config)
    task.local_fusion = load_fusion(workdir, step) if expected else None
    return task
