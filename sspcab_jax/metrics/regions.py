"""Boxed regions for region/track-level video metrics (RBDC/TBDC).

Boxes are ``(x_min, y_min, x_max, y_max)`` in inclusive pixel coordinates: a box covering one
pixel has ``x_min == x_max``. Frames are 0-based indices within a video.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from sspcab_jax.metrics.pro import label_regions


def _as_boxes(boxes: np.ndarray, n: int, what: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if n == 0 else np.asarray(boxes)
    if boxes.shape != (n, 4):
        raise ValueError(f"{what}.boxes must be [{n}, 4], got shape {boxes.shape}")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError(f"{what}.boxes need x_min <= x_max and y_min <= y_max")
    return boxes


@dataclasses.dataclass(frozen=True, eq=False)
class ScoredRegions:
    """Predicted regions of one video.

    Attributes:
        frames: [P] int frame index of each region.
        boxes: [P, 4] inclusive boxes (x_min, y_min, x_max, y_max).
        scores: [P] anomaly score of each region (higher = more anomalous).
    """

    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.shape != frames.shape:
            raise ValueError(
                f"ScoredRegions: {frames.size} frames but {scores.size} scores; need one each"
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError("ScoredRegions.scores contain NaN or infinite values")
        if np.any(frames < 0):
            raise ValueError("ScoredRegions.frames must be >= 0")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "boxes", _as_boxes(self.boxes, frames.size, "ScoredRegions"))


@dataclasses.dataclass(frozen=True, eq=False)
class TrackRegions:
    """Ground-truth regions of one video, each belonging to an anomaly track.

    Attributes:
        frames: [G] int frame index of each region.
        boxes: [G, 4] inclusive boxes (x_min, y_min, x_max, y_max).
        track_ids: [G] int track of each region (ids are local to the video).
    """

    frames: np.ndarray
    boxes: np.ndarray
    track_ids: np.ndarray

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        if track_ids.shape != frames.shape:
            raise ValueError(
                f"TrackRegions: {frames.size} frames but {track_ids.size} track ids; need one each"
            )
        if np.any(frames < 0):
            raise ValueError("TrackRegions.frames must be >= 0")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "boxes", _as_boxes(self.boxes, frames.size, "TrackRegions"))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of inclusive-pixel boxes (+1 on width and height).

    Args:
        a: [..., 4] boxes (x_min, y_min, x_max, y_max).
        b: [..., 4] boxes, broadcastable against ``a``.

    Returns:
        [...] IoU in [0, 1].
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inter_w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    inter_h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def _components(binary: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of each frame of [T, H, W]: (labels, frames [R], inclusive boxes [R, 4])."""
    labels, count = label_regions(binary, connectivity)
    slices = ndimage.find_objects(labels, max_label=count)
    frames = np.array([s[0].start for s in slices], dtype=np.int64)
    boxes = np.array(
        [(s[2].start, s[1].start, s[2].stop - 1, s[1].stop - 1) for s in slices], dtype=np.int64
    ).reshape(-1, 4)
    return labels, frames, boxes


def regions_from_maps(
    anomaly_maps: np.ndarray, threshold: float, connectivity: int = 8, min_area: int = 1
) -> ScoredRegions:
    """Turns pixel anomaly maps of one video into scored boxes.

    A region is a connected component (within one frame) of the pixels with score >= threshold;
    its box is the component's bounding box and its score the maximum of the map inside it.

    Args:
        anomaly_maps: [T, H, W] pixel scores of one video.
        threshold: pixels with score >= threshold are candidate anomalies.
        connectivity: 8 or 4.
        min_area: drop components with fewer pixels (suppresses single-pixel noise).

    Returns:
        The video's :class:`ScoredRegions`, ordered by frame.
    """
    anomaly_maps = np.asarray(anomaly_maps)
    if anomaly_maps.ndim != 3:
        raise ValueError(f"anomaly_maps must be [T, H, W], got shape {anomaly_maps.shape}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    labels, frames, boxes = _components(anomaly_maps >= threshold, connectivity)
    index = np.arange(1, frames.size + 1)
    if frames.size == 0:
        return ScoredRegions(frames=frames, boxes=boxes, scores=np.zeros(0))
    scores = np.asarray(ndimage.maximum(anomaly_maps, labels, index), dtype=np.float64)
    areas = np.bincount(labels.ravel(), minlength=frames.size + 1)[1:]
    keep = areas >= min_area
    return ScoredRegions(frames=frames[keep], boxes=boxes[keep], scores=scores[keep])


def tracks_from_masks(
    masks: np.ndarray, connectivity: int = 8, link_iou: float = 0.1
) -> TrackRegions:
    """Turns ground-truth pixel masks of one video into regions linked into tracks.

    Regions are connected components per frame, boxed. Regions of consecutive frames are linked
    greedily by decreasing box IoU (each region continues at most one track, and only when
    IoU >= ``link_iou``); an unlinked region starts a new track. A gap of one frame ends a track.

    Args:
        masks: [T, H, W] binary masks of one video.
        connectivity: 8 or 4.
        link_iou: minimum box IoU to link regions of consecutive frames.

    Returns:
        The video's :class:`TrackRegions`, ordered by frame, track ids 0, 1, ... in order of
        first appearance.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [T, H, W], got shape {masks.shape}")
    if not 0.0 < link_iou <= 1.0:
        raise ValueError(f"link_iou must be in (0, 1], got {link_iou}")
    _, frames, boxes = _components(masks > 0, connectivity)
    track_ids = np.full(frames.size, -1, dtype=np.int64)
    next_id = 0
    previous = np.zeros(0, dtype=np.int64)  # region indices in the previous frame
    for frame in np.unique(frames):
        current = np.flatnonzero(frames == frame)
        if previous.size and frames[previous[0]] == frame - 1:
            iou = box_iou(boxes[current][:, None], boxes[previous][None])
            # Greedy assignment, best pairs first; small per-frame counts keep this cheap.
            for flat in np.argsort(iou, axis=None, kind="stable")[::-1]:
                i, j = np.unravel_index(flat, iou.shape)
                if iou[i, j] < link_iou:
                    break
                if track_ids[current[i]] < 0 and not np.any(
                    track_ids[current] == track_ids[previous[j]]
                ):
                    track_ids[current[i]] = track_ids[previous[j]]
        for region in current:
            if track_ids[region] < 0:
                track_ids[region] = next_id
                next_id += 1
        previous = current
    return TrackRegions(frames=frames, boxes=boxes, track_ids=track_ids)
