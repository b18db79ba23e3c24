"""Calibration: image and pixel thresholds plus normalisation statistics, stored as JSON.

Thresholds come from validation images only (never the test set), by one of two rules (exact
definitions in :mod:`sspcab_jax.detector.thresholds`):

* ``'false_alarm_rate'``: normal validation images only; the image threshold is the smallest
  ``t`` with ``fraction(score > t) <= rate``, the pixel threshold the same over all validation
  pixels.
* ``'f1'``: a labelled validation set; F1-optimal thresholds at image and pixel level. Without
  anomalous images (or without anomalous pixels, for the pixel threshold) the level falls back to
  the false-alarm rule and its source says ``'false_alarm_rate_fallback'``.
* ``'none'``: calibration unavailable (no validation images); no verdicts are given.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sspcab_jax.detector import thresholds

FORMAT_VERSION = 1
FILE_NAME = "calibration.json"
SOURCES = ("false_alarm_rate", "f1", "false_alarm_rate_fallback", "none")
DEFAULT_FALSE_ALARM_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Thresholds and normalisation statistics of a trained model.

    Attributes:
      image_threshold: an image is anomalous iff its raw score is ``> image_threshold``.
      pixel_threshold: a pixel is defective iff its map value is ``> pixel_threshold``.
      image_min: smallest validation image score (normalisation's 0 anchor).
      image_max: largest validation image score (sets the 1 anchor).
      pixel_min: smallest validation map value.
      pixel_max: largest validation map value.
      source: rule behind the image threshold, one of :data:`SOURCES`.
      pixel_source: rule behind the pixel threshold, one of :data:`SOURCES`.
      false_alarm_rate: target false-alarm rate where the false-alarm rule was used, else None.
      num_images: validation images used.
      num_anomalous_images: of which anomalous (0 for the false-alarm rule).
      num_pixels: validation pixels used.
      num_anomalous_pixels: of which anomalous.
      synthetic_recall_estimate: optional ``{'image_recall', 'pixel_recall', 'num_images'}``:
        recall these thresholds give on synthetic anomalies — an estimate, not a test result
        (training adds ``image_false_alarm_rate`` and ``pixel_false_alarm_rate`` of the same
        images without anomalies).
      tile_size: ``[height, width]`` of the tiles the scores were computed on, None when each
        image was resized to the model's input (tiled scores are on another scale).
      tile_overlap: the tiles' overlap in pixels, None when untiled.
      checkpoint_step: training step of the weights calibrated, None when unknown.
      note: free text (e.g. why calibration is unavailable).
      version: file format version.
    """

    image_threshold: float | None
    pixel_threshold: float | None
    image_min: float | None = None
    image_max: float | None = None
    pixel_min: float | None = None
    pixel_max: float | None = None
    source: str = "none"
    pixel_source: str = "none"
    false_alarm_rate: float | None = None
    num_images: int = 0
    num_anomalous_images: int = 0
    num_pixels: int = 0
    num_anomalous_pixels: int = 0
    synthetic_recall_estimate: dict[str, Any] | None = None
    tile_size: list[int] | None = None
    tile_overlap: int | None = None
    checkpoint_step: int | None = None
    note: str = ""
    version: int = FORMAT_VERSION

    def __post_init__(self):
        for name in ("source", "pixel_source"):
            if getattr(self, name) not in SOURCES:
                raise ValueError(f"{name} must be one of {SOURCES}, got {getattr(self, name)!r}.")

    @property
    def tiling(self) -> tuple[tuple[int, int] | None, int]:
        """``(tile_size as (height, width) or None, tile_overlap)`` the scores were made with."""
        if self.tile_size is None:
            return None, 0
        return (int(self.tile_size[0]), int(self.tile_size[1])), int(self.tile_overlap or 0)

    @classmethod
    def unavailable(cls, reason: str) -> Calibration:
        """A calibration without thresholds, e.g. when no validation images were held out."""
        return cls(image_threshold=None, pixel_threshold=None, note=reason)

    @property
    def available(self) -> bool:
        """True when both thresholds are set (verdicts can be given)."""
        return self.image_threshold is not None and self.pixel_threshold is not None

    def _require(self) -> None:
        if not self.available:
            raise ValueError(
                f"This calibration has no thresholds ({self.note or 'source none'}); calibrate "
                "on validation images first."
            )

    def normalize_scores(self, scores) -> np.ndarray:
        """Raw image scores ``[N]`` -> float32 ``[N]`` in [0, 1], 0.5 at the image threshold."""
        self._require()
        return thresholds.normalize(scores, self.image_threshold, self.image_min, self.image_max)

    def normalize_maps(self, maps) -> np.ndarray:
        """Raw maps (any shape) -> float32 in [0, 1], 0.5 at the pixel threshold."""
        self._require()
        return thresholds.normalize(maps, self.pixel_threshold, self.pixel_min, self.pixel_max)

    def is_anomalous(self, scores) -> np.ndarray:
        """``scores > image_threshold`` as bool, shape of ``scores``."""
        self._require()
        return np.asarray(scores, np.float64) > self.image_threshold

    def defect_mask(self, maps) -> np.ndarray:
        """``maps > pixel_threshold`` as bool, shape of ``maps``."""
        self._require()
        return np.asarray(maps, np.float64) > self.pixel_threshold

    def to_json(self) -> str:
        """The calibration as a JSON object (sorted keys, indented)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Parses :meth:`to_json`'s output; raises ValueError on another format version."""
        fields: dict[str, Any] = json.loads(text)
        version = fields.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"calibration format version {version!r} is not supported (expected "
                f"{FORMAT_VERSION}); recalibrate with this version of the library."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"Unknown calibration fields {unknown}; is the file corrupted?")
        return cls(**fields)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``calibration.json`` (into ``path`` if it is a folder); returns the file."""
        target = Path(path)
        if target.is_dir():
            target = target / FILE_NAME
        target.write_text(self.to_json() + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Reads a file written by :meth:`save` (a folder means its ``calibration.json``)."""
        source = Path(path)
        if source.is_dir():
            source = source / FILE_NAME
        if not source.is_file():
            raise FileNotFoundError(f"No calibration file at {source}; run calibration first.")
        return cls.from_json(source.read_text())


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def _as_maps(maps) -> np.ndarray:
    array = np.asarray(maps, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"maps must be [N, H, W], got shape {array.shape}.")
    return array


def calibrate_from_normals(
    scores, maps, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
) -> Calibration:
    """Thresholds at a target false-alarm rate from normal validation images.

    Args:
      scores: raw image scores ``[N]`` of normal validation images.
      maps: their anomaly maps ``[N, H, W]``.
      false_alarm_rate: target fraction of normal images (and pixels) flagged, in [0, 1).

    Returns:
      A :class:`Calibration` with source ``'false_alarm_rate'``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    maps = _as_maps(maps)
    if maps.shape[0] != scores.size:
        raise ValueError(f"{scores.size} scores but {maps.shape[0]} maps.")
    image_t = thresholds.false_alarm_threshold(scores, false_alarm_rate)
    pixel_t = thresholds.false_alarm_threshold(maps, false_alarm_rate)
    (image_min, image_max), (pixel_min, pixel_max) = _range(scores), _range(maps)
    return Calibration(
        image_threshold=image_t,
        pixel_threshold=pixel_t,
        image_min=image_min,
        image_max=image_max,
        pixel_min=pixel_min,
        pixel_max=pixel_max,
        source="false_alarm_rate",
        pixel_source="false_alarm_rate",
        false_alarm_rate=float(false_alarm_rate),
        num_images=int(scores.size),
        num_pixels=int(maps.size),
    )


def calibrate_from_labelled(
    scores, labels, maps, masks, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
) -> Calibration:
    """F1-optimal thresholds from a labelled validation set.

    Args:
      scores: raw image scores ``[N]``.
      labels: ``[N]``, 1 (or True) for anomalous images.
      maps: anomaly maps ``[N, H, W]``.
      masks: ground truth ``[N, H, W]`` (or ``[N, H, W, 1]``), > 0.5 = anomalous pixel.
      false_alarm_rate: rate of the fallback rule, used for a level without anomalies; the
        fallback uses the normal images' scores (or pixels) only.

    Returns:
      A :class:`Calibration`; each level's source is ``'f1'`` or
      ``'false_alarm_rate_fallback'``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    maps = _as_maps(maps)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    masks = masks > 0.5
    if not scores.size == labels.size == maps.shape[0] or masks.shape != maps.shape:
        raise ValueError(
            f"Sizes differ: {scores.size} scores, {labels.size} labels, maps {maps.shape}, "
            f"masks {masks.shape}."
        )
    used_rate = None
    if labels.any():
        image_t, _ = thresholds.best_f1_threshold(scores, labels)
        image_source = "f1"
    else:
        image_t = thresholds.false_alarm_threshold(scores, false_alarm_rate)
        image_source, used_rate = "false_alarm_rate_fallback", float(false_alarm_rate)
    if masks.any():
        pixel_t, _ = thresholds.best_f1_threshold(maps, masks)
        pixel_source = "f1"
    else:
        normal_maps = maps[~labels] if (~labels).any() else maps
        pixel_t = thresholds.false_alarm_threshold(normal_maps, false_alarm_rate)
        pixel_source, used_rate = "false_alarm_rate_fallback", float(false_alarm_rate)
    (image_min, image_max), (pixel_min, pixel_max) = _range(scores), _range(maps)
    return Calibration(
        image_threshold=image_t,
        pixel_threshold=pixel_t,
        image_min=image_min,
        image_max=image_max,
        pixel_min=pixel_min,
        pixel_max=pixel_max,
        source=image_source,
        pixel_source=pixel_source,
        false_alarm_rate=used_rate,
        num_images=int(scores.size),
        num_anomalous_images=int(labels.sum()),
        num_pixels=int(maps.size),
        num_anomalous_pixels=int(masks.sum()),
    )


def synthetic_recall(calibration: Calibration, scores, maps, masks) -> dict[str, Any]:
    """Recall of the calibrated thresholds on synthetic anomalies (an estimate).

    Args:
      calibration: a calibration with thresholds.
      scores: raw scores ``[N]`` of validation images with synthetic anomalies pasted in.
      maps: their maps ``[N, H, W]``.
      masks: the synthetic anomaly masks ``[N, H, W]`` (or ``[N, H, W, 1]``), > 0.5 = anomalous.

    Returns:
      ``{'image_recall', 'pixel_recall', 'num_images'}``: fraction of images with
      ``score > image_threshold`` and of masked pixels with ``map > pixel_threshold`` (None
      when no pixel is masked, so that the result stays valid JSON). Store it with
      ``dataclasses.replace(calibration, synthetic_recall_estimate=...)``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    maps = _as_maps(maps)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    masks = masks > 0.5
    if scores.size == 0 or masks.shape != maps.shape or maps.shape[0] != scores.size:
        raise ValueError(
            f"Need matching non-empty inputs: {scores.size} scores, maps {maps.shape}, "
            f"masks {masks.shape}."
        )
    image_recall = float(np.mean(calibration.is_anomalous(scores)))
    hits = calibration.defect_mask(maps)[masks]
    pixel_recall = float(hits.mean()) if hits.size else None
    return {"image_recall": image_recall, "pixel_recall": pixel_recall, "num_images": scores.size}
