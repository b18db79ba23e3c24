"""A :class:`~sspcab_jax.detector.Detector` restored from a training run's directory."""

from __future__ import annotations

import logging
import os
import pathlib

from sspcab_jax.detector.calibration import FILE_NAME, Calibration

logger = logging.getLogger(__name__)


def _tiling(tile_size, tile_overlap: int) -> tuple[tuple[int, int] | None, int]:
    if tile_size is None:
        return None, 0
    pair = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    return (int(pair[0]), int(pair[1])), int(tile_overlap)


def _describe(tiling: tuple[tuple[int, int] | None, int]) -> str:
    size, overlap = tiling
    return "resized (no tiling)" if size is None else f"tile_size={size}, tile_overlap={overlap}"


def load_calibration(
    workdir: str | os.PathLike,
    step: int | None = None,
    tile_size=None,
    tile_overlap: int = 0,
) -> Calibration:
    """The calibration of a run's weights, or an unavailable one saying how to make one.

    Candidates, in this order of preference: ``<workdir>/calibration.json`` (what the last
    training or ``train.calibrate`` wrote), then the copy stored in checkpoint ``step``. The
    first one made for this ``step`` and this tiling is used; failing that, the first that
    exists, with a warning: thresholds of other weights or another tiling are on another scale.

    Args:
      workdir: the training run's directory.
      step: the restored checkpoint step (None: not checked, no checkpoint copy read).
      tile_size: the detector's tile size (None: resized).
      tile_overlap: the detector's tile overlap.
    """
    from sspcab_jax.training.checkpoint import read_step_calibration

    wanted = _tiling(tile_size, tile_overlap)
    path = pathlib.Path(workdir) / FILE_NAME
    candidates = [Calibration.load(path)] if path.is_file() else []
    stored = (
        None if step is None else read_step_calibration(pathlib.Path(workdir) / "checkpoints", step)
    )
    if stored is not None:
        candidates.append(Calibration.from_json(stored))
    if not candidates:
        reason = (
            f"no {FILE_NAME} in {workdir}: compute it with `python -m train.calibrate "
            f"--workdir={workdir}`"
        )
        logger.warning(
            "uncalibrated detector (%s); predictions have maps and raw scores only", reason
        )
        return Calibration.unavailable(reason)

    def same_step(cal: Calibration) -> bool:
        return step is None or cal.checkpoint_step is None or cal.checkpoint_step == step

    matching = [c for c in candidates if same_step(c) and c.tiling == wanted]
    if matching:
        return matching[0]
    chosen = next((c for c in candidates if c.tiling == wanted), candidates[0])
    if chosen.tiling != wanted:
        flags = (
            "" if wanted[0] is None else f" --tile_size={wanted[0][0]} --tile_overlap={wanted[1]}"
        )
        logger.warning(
            "the calibration of %s was made %s but this detector scores %s: scores are on "
            "another scale, so its verdicts are unreliable. Recalibrate with `python -m "
            "train.calibrate --workdir=%s%s`.",
            *(workdir, _describe(chosen.tiling), _describe(wanted), workdir, flags),
        )
    if not same_step(chosen):
        logger.warning(
            "the calibration of %s was made for step %s, not the restored step %s; recalibrate "
            "with `python -m train.calibrate --workdir=%s`.",
            *(workdir, chosen.checkpoint_step, step, workdir),
        )
    return chosen


def detector_kwargs(
    workdir: str | os.PathLike, which: str = "best", tile_size=None, tile_overlap: int = 0
) -> dict:
    """The pieces of a run's detector: restored state, eval step, input size and score rule.

    Returns:
      ``Detector.from_eval_step`` arguments (``eval_step``, ``state``, ``calibration``,
      ``image_size``, ``channels``, ``score_fn``) plus ``loaded``, the ``LoadedRun``.

    Raises:
      RunError: the run cannot be restored (see ``load_run``).
      ValueError: the run's model scores clips, not single images.
    """
    # Imported here: the detector itself needs neither the training code nor Orbax.
    from sspcab_jax.training.fusion import attach_saved_fusion
    from sspcab_jax.training.restore import load_run
    from sspcab_jax.training.tasks import get_task

    loaded = load_run(workdir, which)  # type: ignore[arg-type]
    task = attach_saved_fusion(get_task(loaded.config), workdir, loaded.step)
    shape = task.input_shape()
    if len(shape) != 4:
        raise ValueError(
            f"{workdir} holds a clip model (input {shape}); Detector scores single images: use "
            "train.evaluate for video runs."
        )
    return dict(
        eval_step=task.scoring_step(loaded.model),
        state=loaded.state,
        calibration=load_calibration(workdir, loaded.step, tile_size, tile_overlap),
        image_size=tuple(shape[1:3]),
        channels=shape[-1],
        score_fn=task.image_score_fn(),
        input_channel_order=loaded.config.data.get("channel_order", "rgb"),
        loaded=loaded,
    )
