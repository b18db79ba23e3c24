"""Trained-model inference for users: calibrated verdicts, normalised scores, tiling."""

from sspcab_jax.detector.calibration import (
    Calibration,
    calibrate_from_labelled,
    calibrate_from_normals,
    synthetic_recall,
)
from sspcab_jax.detector.detector import Detector
from sspcab_jax.detector.prediction import Prediction

__all__ = [
    "Calibration",
    "Detector",
    "Prediction",
    "calibrate_from_labelled",
    "calibrate_from_normals",
    "synthetic_recall",
]
