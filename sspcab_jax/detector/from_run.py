"""A :class:`~sspcab_jax.detector.Detector` restored from a training run's directory."""

from __future__ import annotations

import logging
import os
import pathlib

from sspcab_jax.detector.calibration import FILE_NAME, Calibration

logger = logging.getLogger(__name__)


def load_calibration(workdir: str | os.PathLike) -> Calibration:
    """``<workdir>/calibration.json``, or an unavailable calibration saying how to make one."""
    path = pathlib.Path(workdir) / FILE_NAME
    if path.is_file():
        return Calibration.load(path)
    reason = (
        f"no {FILE_NAME} in {workdir}: compute it with `python -m train.calibrate "
        f"--workdir={workdir}`"
    )
    logger.warning("uncalibrated detector (%s); predictions have maps and raw scores only", reason)
    return Calibration.unavailable(reason)


def detector_kwargs(workdir: str | os.PathLike, which: str = "best") -> dict:
    """The pieces of a run's detector: restored state, eval step, input size and score rule.

    Returns:
      ``Detector.from_eval_step`` arguments (``eval_step``, ``state``, ``calibration``,
      ``image_size``, ``channels``, ``score_fn``) plus ``loaded``, the ``LoadedRun``.

    Raises:
      RunError: the run cannot be restored (see ``load_run``).
      ValueError: the run's model scores clips, not single images.
    """
    # Imported here: the detector itself needs neither the training code nor Orbax.
    from sspcab_jax.training.restore import load_run
    from sspcab_jax.training.tasks import get_task

    loaded = load_run(workdir, which)  # type: ignore[arg-type]
    task = get_task(loaded.config)
    shape = task.input_shape()
    if len(shape) != 4:
        raise ValueError(
            f"{workdir} holds a clip model (input {shape}); Detector scores single images: use "
            "train.evaluate for video runs."
        )
    return dict(
        eval_step=task.eval_step(loaded.model),
        state=loaded.state,
        calibration=load_calibration(workdir),
        image_size=tuple(shape[1:3]),
        channels=shape[-1],
        score_fn=task.image_score_fn(),
        input_channel_order=loaded.config.data.get("channel_order", "rgb"),
        loaded=loaded,
    )
