"""What ``train.predict`` writes for images and video frames alike: CSV rows and overlays."""

from __future__ import annotations

import csv
import pathlib

import numpy as np

from sspcab_jax import viz
from sspcab_jax.detector import Detector
from sspcab_jax.detector.prediction import Prediction

COLUMNS = ("file", "score", "normalized_score", "is_anomalous", "defect_pixels")


def prediction_row(name: str, result: Prediction, i: int) -> tuple:
    """``(file, score, normalized_score, is_anomalous, defect_pixels)`` of item ``i``.

    The last three are None when the detector is uncalibrated.
    """
    if not result.calibrated:
        return (name, float(result.score[i]), None, None, None)
    return (
        name,
        float(result.score[i]),
        float(result.normalized_score[i]),
        bool(result.is_anomalous[i]),
        int(result.defect_mask[i].sum()),
    )


def write_csv(path: pathlib.Path, rows: list[tuple]) -> None:
    """``predictions.csv``: a header of :data:`COLUMNS`, floats in full precision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                ["" if v is None else repr(v) if isinstance(v, float) else v for v in row]
            )


def fixed_map_range(detector: Detector) -> tuple[float, float] | None:
    """The colour range of a model whose maps are bounded (DRAEM: [0, 1]), else None.

    Read from the run's task; a detector built from parts (no ``config``) has none, nor has a
    run whose maps are fused with local statistics (unbounded z-score sums).
    """
    config = getattr(detector, "config", None)
    if config is None:
        return None
    # The training code only for run detectors.
    from sspcab_jax.training.fusion import fusion_enabled
    from sspcab_jax.training.tasks import get_task

    if fusion_enabled(config):
        return None

    return get_task(config).anomaly_map_range


def overlay_picture(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    vmin: float | None,
    vmax: float | None,
) -> np.ndarray:
    """``image [H, W, 3]`` under the coloured ``anomaly_map [H, W]``, ``mask`` outlined in white.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    picture = viz.overlay(image, anomaly_map, vmin=vmin, vmax=vmax)
    return picture if mask is None else viz.outline_mask(picture, mask)
