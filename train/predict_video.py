"""Scoring a video file frame by frame for ``train.predict``.

Frames are decoded in chunks of the detector's ``batch_size`` (one chunk in memory at a time,
so a video of any length fits), and the last chunk is padded with copies of its last frame so
that every network call has the same batch shape: one compilation per frame size. Each frame
gives one row named ``<video>#frame=<index>`` (index from 0, zero-padded to 6 digits, so the
names sort in frame order).

The annotated video (optional) has the input's size, frame rate and container: each frame
under its anomaly map, the calibrated defect mask outlined in white, and a strip on top with
the frame index, the verdict and the normalised score (red: anomalous, green: normal; grey with
the raw score when the detector is uncalibrated). Map colours: bounded maps (DRAEM's
probabilities) on their fixed range; other maps, when calibrated, normalised (0.5 = the pixel
threshold) on [0, 1]; uncalibrated unbounded maps on the range of the first chunk, kept for the
whole video so frames compare.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from sspcab_jax import viz
from sspcab_jax.data import CorruptImageError, VideoWriter, iter_video, video_info
from sspcab_jax.detector import Detector
from sspcab_jax.detector.prediction import Prediction
from train.predict_outputs import fixed_map_range, overlay_picture, prediction_row

ANOMALOUS_COLOUR = (200, 30, 30)
NORMAL_COLOUR = (30, 140, 60)
UNCALIBRATED_COLOUR = (90, 90, 90)


class VideoResult(NamedTuple):
    """What :func:`predict_video` returns.

    Attributes:
        rows: One :func:`~train.predict_outputs.prediction_row` per decoded frame, in order.
        problem: Why decoding stopped early (the frames before are in ``rows``), or None.
    """

    rows: list[tuple]
    problem: str | None


def frame_name(video: str, index: int) -> str:
    """The ``file`` of frame ``index`` of ``video`` in ``predictions.csv``."""
    return f"{video}#frame={index:06d}"


def pad_batch(frames: np.ndarray, size: int) -> np.ndarray:
    """``frames [n, H, W, C]`` followed by copies of the last one up to ``[size, H, W, C]``."""
    missing = size - frames.shape[0]
    if missing <= 0:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])


class _Colours:
    """Per-chunk colour values and range of the maps (see the module docstring)."""

    def __init__(self, detector: Detector):
        self.range = fixed_map_range(detector)
        cal = detector.calibration
        self.normalize = None
        if self.range is None and cal is not None and cal.available:
            self.normalize, self.range = cal.normalize_maps, (0.0, 1.0)

    def __call__(self, maps: np.ndarray) -> tuple[np.ndarray, float, float]:
        values = maps if self.normalize is None else self.normalize(maps)
        if self.range is None:  # uncalibrated and unbounded: fixed by the first chunk
            self.range = (float(values.min()), float(values.max()))
        return values, *self.range


def _caption(result: Prediction, i: int, index: int) -> tuple[str, tuple[int, int, int]]:
    if not result.calibrated:
        return f"#{index} score {float(result.score[i]):.4g}", UNCALIBRATED_COLOUR
    normalized = float(result.normalized_score[i])
    if result.is_anomalous[i]:
        return f"#{index} ANOMALY {normalized:.2f}", ANOMALOUS_COLOUR
    return f"#{index} normal {normalized:.2f}", NORMAL_COLOUR


def annotate(frames: np.ndarray, result: Prediction, first: int, colours: _Colours) -> np.ndarray:
    """Annotated ``uint8 [n, H, W, 3]`` of ``frames [n, H, W, 3]`` numbered from ``first``."""
    n = frames.shape[0]
    values, vmin, vmax = colours(np.asarray(result.anomaly_map[:n]))
    out = []
    for i in range(n):
        mask = None if result.defect_mask is None else result.defect_mask[i]
        picture = overlay_picture(frames[i], values[i], mask, vmin, vmax)
        out.append(viz.draw_banner(picture, *_caption(result, i, first + i)))
    return np.stack(out)


def predict_video(
    detector: Detector,
    path: pathlib.Path,
    name: str,
    *,
    annotated: pathlib.Path | None = None,
    progress: bool = True,
) -> VideoResult:
    """Scores every frame of a video file; optionally writes the annotated video.

    Args:
        detector: Scores frames in batches of ``detector.batch_size``.
        path: The video file.
        name: Its name in ``predictions.csv`` (frames are ``<name>#frame=<index>``).
        annotated: Where to write the annotated video, or None.
        progress: Show a progress bar on stderr (only when stderr is a terminal).

    Returns:
        The rows, and why decoding stopped early if it did.

    Raises:
        CorruptImageError: The file cannot be opened.
    """
    fps, estimate = video_info(path)
    colours = _Colours(detector) if annotated is not None else None
    rows: list[tuple] = []
    writer: VideoWriter | None = None
    bar = tqdm(total=estimate, desc=name, unit="frame", disable=None if progress else True)
    problem = None
    try:
        for frames in iter_video(path, detector.batch_size):
            result = detector(pad_batch(frames, detector.batch_size))
            first = len(rows)
            rows += [
                prediction_row(frame_name(name, first + i), result, i) for i in range(len(frames))
            ]
            if colours is not None:
                if writer is None:
                    annotated.parent.mkdir(parents=True, exist_ok=True)
                    writer = VideoWriter(annotated, fps=fps, macro_block_size=2)
                writer.append(annotate(frames, result, first, colours))
            bar.update(len(frames))
    except CorruptImageError as error:
        problem = f"{error} (stopped after {len(rows)} frame(s))"
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if not rows and problem is None:
        problem = f"video {path} has no frames"
    return VideoResult(rows, problem)
