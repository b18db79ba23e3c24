"""Video anomaly-detection metrics: frame-level micro/macro AUC, score smoothing, RBDC, TBDC.

Micro AUC pools every frame of every video into one ROC; macro AUC averages per-video AUCs (both
as defined in the SSMCTB paper, Sec. IV-B); RBDC/TBDC (Ramachandra & Jones, WACV 2020) as the
public ``evaluation/compute_tbdc_rbdc.py`` of lilygeorgescu/AED, which the metric's author checked.
Smoothing and normalisation are separate, explicit steps so every reported number can say which
were applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from sspcab_jax.metrics.image import auroc
from sspcab_jax.metrics.regions import ScoredRegions, TrackRegions, box_iou

_MODES = {"constant": "constant", "nearest": "edge", "reflect": "symmetric", "mirror": "reflect"}


def _check_videos(
    scores_per_video: Sequence[np.ndarray], labels_per_video: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(scores_per_video) != len(labels_per_video):
        raise ValueError(
            f"{len(scores_per_video)} score sequences but {len(labels_per_video)} label sequences"
        )
    if len(scores_per_video) == 0:
        raise ValueError("no videos given")
    pairs = []
    for v, (s, y) in enumerate(zip(scores_per_video, labels_per_video, strict=True)):
        s, y = np.asarray(s), np.asarray(y)
        if s.ndim != 1 or s.shape != y.shape or s.size == 0:
            raise ValueError(
                f"video {v}: scores and labels must be non-empty [T] arrays of equal length, "
                f"got shapes {s.shape} and {y.shape}"
            )
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"video {v}: labels must be binary (0/1 or bool)")
        pairs.append((s, y))
    return pairs


def micro_auc(
    scores_per_video: Sequence[np.ndarray], labels_per_video: Sequence[np.ndarray]
) -> float:
    """Frame-level micro AUC: all frames of all videos concatenated, one ROC AUC.

    Args:
        scores_per_video: V arrays [T_v] of frame scores.
        labels_per_video: V arrays [T_v] of binary frame labels (1 = abnormal frame).

    Returns:
        AUROC over the sum_v T_v frames.
    """
    pairs = _check_videos(scores_per_video, labels_per_video)
    return auroc(np.concatenate([s for s, _ in pairs]), np.concatenate([y for _, y in pairs]))


def macro_auc(
    scores_per_video: Sequence[np.ndarray],
    labels_per_video: Sequence[np.ndarray],
    pad_each_video: bool = False,
) -> float:
    """Frame-level macro AUC: the mean over videos of each video's ROC AUC.

    Args:
        scores_per_video: V arrays [T_v] of frame scores.
        labels_per_video: V arrays [T_v] of binary frame labels.
        pad_each_video: prepend (label 0, score 0) and append (label 1, score 1) to every video
            before its AUC, the Ionescu-group convention (AED-MAE's ``inference.py``) that keeps
            single-class videos defined. It assumes scores in [0, 1] (e.g. after
            :func:`minmax_normalise`).

    Returns:
        The NaN-mean of per-video AUCs; a video with a single class (possible only without
        padding) is NaN and so left out of the mean.

    Raises:
        ValueError: if no video has an AUC (every video has a single class).
    """
    aucs = []
    for s, y in _check_videos(scores_per_video, labels_per_video):
        if pad_each_video:
            s = np.concatenate([[0.0], s, [1.0]])
            y = np.concatenate([[0], y, [1]])
        y_bool = np.asarray(y).astype(bool)
        aucs.append(auroc(s, y) if y_bool.any() and not y_bool.all() else np.nan)
    if np.all(np.isnan(aucs)):
        raise ValueError("macro AUC is undefined: every video has a single class of labels")
    return float(np.nanmean(aucs))


def gaussian_smooth(
    scores: np.ndarray,
    sigma: float,
    truncate: float = 4.0,
    mode: str = "constant",
    radius: int | None = None,
) -> np.ndarray:
    """Temporal Gaussian filter of one video's frame scores (normalised kernel, same length).

    The kernel is ``exp(-x^2 / (2 sigma^2))`` for integer ``x`` in ``[-radius, radius]``, divided
    by its sum; ``radius`` defaults to ``int(truncate * sigma + 0.5)``.

    Args:
        scores: [T] frame scores.
        sigma: standard deviation in frames (> 0).
        truncate: kernel half-width in units of sigma, used when ``radius`` is None.
        mode: border handling: 'constant' (zeros beyond the ends, the convention of the public
            video-evaluation code, e.g. AED-MAE and UBnormal), 'nearest', 'reflect'
            (d c b a | a b c d) or 'mirror' (d c b | a b c d); names as in ``scipy.ndimage``.
        radius: explicit kernel half-width in frames.

    Returns:
        [T] smoothed scores (float64).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty [T] array, got shape {scores.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    radius = int(truncate * sigma + 0.5) if radius is None else int(radius)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(scores, radius, mode=_MODES[mode])
    # The kernel is symmetric, so convolution and correlation coincide.
    return np.convolve(padded, kernel, mode="valid")


def minmax_normalise(scores: np.ndarray) -> np.ndarray:
    """Rescales one video's frame scores to [0, 1]; a constant video maps to zeros.

    Args:
        scores: [T] frame scores.

    Returns:
        [T] ``(s - min) / (max - min)`` (float64).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty [T] array, got shape {scores.shape}")
    span = scores.max() - scores.min()
    if span == 0:
        return np.zeros_like(scores)
    return (scores - scores.min()) / span


def postprocess_scores(
    scores_per_video: Sequence[np.ndarray], sigma: float | None = None, normalise: bool = False
) -> list[np.ndarray]:
    """Applies the optional per-video smoothing, then the optional min-max normalisation.

    Args:
        scores_per_video: V arrays [T_v].
        sigma: Gaussian sigma in frames ('constant' borders); None skips smoothing.
        normalise: apply :func:`minmax_normalise` per video after smoothing.

    Returns:
        V arrays [T_v] (float64).
    """
    out = []
    for s in scores_per_video:
        s = np.asarray(s, dtype=np.float64)
        if sigma is not None:
            s = gaussian_smooth(s, sigma)
        out.append(minmax_normalise(s) if normalise else s)
    return out


class RegionTrackCurves(NamedTuple):
    """RBDC/TBDC and the curves they integrate.

    Attributes:
        rbdc: area under RBDR vs false positives per frame, FPR in [0, 1].
        tbdc: area under TBDR vs false positives per frame.
        fpr: [K] false positives per frame (cumulative FP / all test frames), from 0 to 1.
        rbdr: [K] region-based detection rate at each point.
        tbdr: [K] track-based detection rate at each point.
    """

    rbdc: float
    tbdc: float
    fpr: np.ndarray
    rbdr: np.ndarray
    tbdr: np.ndarray


def _match_pairs(
    pred: Sequence[ScoredRegions], gt: Sequence[TrackRegions]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (prediction, GT region) pairs in the same video and frame with their box IoU.

    Indices refer to the concatenation of all videos' predictions and GT regions.
    """
    # One integer key per (video, frame) lets every video be joined with one searchsorted.
    span = 1 + max([0] + [int(r.frames.max()) for r in [*pred, *gt] if r.frames.size])
    p_key = np.concatenate([v * span + r.frames for v, r in enumerate(pred)])
    g_key = np.concatenate([v * span + r.frames for v, r in enumerate(gt)])
    g_order = np.argsort(g_key, kind="stable")
    lo = np.searchsorted(g_key[g_order], p_key, side="left")
    hi = np.searchsorted(g_key[g_order], p_key, side="right")
    n = hi - lo
    p_idx = np.repeat(np.arange(p_key.size), n)
    offset = np.arange(p_idx.size) - np.repeat(np.cumsum(n) - n, n)
    g_idx = g_order[np.repeat(lo, n) + offset]
    p_boxes = np.concatenate([r.boxes for r in pred]).reshape(-1, 4)
    g_boxes = np.concatenate([r.boxes for r in gt]).reshape(-1, 4)
    return p_idx, g_idx, box_iou(p_boxes[p_idx], g_boxes[g_idx])


def rbdc_tbdc(
    predictions: Sequence[ScoredRegions],
    ground_truth: Sequence[TrackRegions],
    num_frames: int,
    iou_threshold: float = 0.1,
    track_fraction: float = 0.1,
) -> RegionTrackCurves:
    """Region- and track-based detection criteria (Ramachandra & Jones, WACV 2020).

    Predicted regions of all videos are sorted by decreasing score (ties keep input order:
    video, then row) and visited one by one, each visit adding one curve point. A region with
    no GT region of IoU >= ``iou_threshold`` in its frame is a false positive; one that matches
    not-yet-matched GT regions adds them all as true positives (possibly several); one that
    matches only already-matched GT regions counts as neither. A track is detected once at least
    ``track_fraction`` of its regions are matched. The curve starts at (0, 0), keeps the points
    with FPR <= 1, is extended flat to FPR = 1, and is integrated with the trapezoid rule.

    Args:
        predictions: V per-video predicted regions.
        ground_truth: V per-video ground-truth regions with track ids (same video order).
        num_frames: number of test frames over ALL videos (frames without any region count).
        iou_threshold: minimum inclusive-pixel box IoU for a match.
        track_fraction: minimum matched fraction of a track's regions for it to be detected.

    Returns:
        :class:`RegionTrackCurves` with RBDC, TBDC in [0, 1] and their curves.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"{len(predictions)} prediction videos but {len(ground_truth)} ground-truth videos"
        )
    if num_frames <= 0:
        raise ValueError(f"num_frames must be > 0, got {num_frames}")
    for name, value in (("iou_threshold", iou_threshold), ("track_fraction", track_fraction)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    n_gt = sum(r.frames.size for r in ground_truth)
    if n_gt == 0:
        raise ValueError("ground truth holds no region: RBDC/TBDC are undefined")
    scores = np.concatenate([np.zeros(0), *[r.scores for r in predictions]])
    # Global track index: track ids restart in every video.
    track_keys = np.concatenate(
        [
            np.stack([np.full(r.track_ids.size, v), r.track_ids], 1)
            for v, r in enumerate(ground_truth)
        ]
    )
    _, track = np.unique(track_keys, axis=0, return_inverse=True)
    track = track.reshape(-1)
    n_tracks = int(track.max()) + 1

    rank = np.empty(scores.size, dtype=np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(scores.size)
    p_idx, g_idx, iou = _match_pairs(predictions, ground_truth)
    hit = iou >= iou_threshold
    p_idx, g_idx = p_idx[hit], g_idx[hit]
    # Each GT region is newly matched by the first (highest-ranked) prediction overlapping it.
    first = np.full(n_gt, np.iinfo(np.int64).max)
    np.minimum.at(first, g_idx, rank[p_idx])
    matched = first < scores.size
    tp = np.bincount(first[matched], minlength=scores.size)
    fp = np.ones(scores.size, dtype=np.int64)
    fp[rank[p_idx]] = 0  # any match, new or not, means not a false positive

    # A track is detected at the rank where its k-th region is matched, k = the smallest count
    # with count / length >= track_fraction; the tolerance keeps e.g. 0.1 * 30 = 3.0000000000000004
    # from requiring 4 regions.
    lengths = np.bincount(track, minlength=n_tracks)
    needed = np.ceil(track_fraction * lengths - 1e-9).clip(min=1).astype(np.int64)
    order = np.lexsort((first, track))
    start = np.cumsum(lengths) - lengths
    kth = first[order[start + needed - 1]]
    detected_at = kth[kth < scores.size]
    tracks_hit = np.bincount(detected_at, minlength=scores.size)

    fpr = np.concatenate([[0.0], np.cumsum(fp) / num_frames])
    rbdr = np.concatenate([[0.0], np.cumsum(tp) / n_gt])
    tbdr = np.concatenate([[0.0], np.cumsum(tracks_hit) / n_tracks])
    keep = fpr <= 1.0
    fpr, rbdr, tbdr = fpr[keep], rbdr[keep], tbdr[keep]
    if fpr[-1] < 1.0:
        fpr, rbdr, tbdr = np.append(fpr, 1.0), np.append(rbdr, rbdr[-1]), np.append(tbdr, tbdr[-1])
    return RegionTrackCurves(
        rbdc=float(np.trapezoid(rbdr, fpr)),
        tbdc=float(np.trapezoid(tbdr, fpr)),
        fpr=fpr,
        rbdr=rbdr,
        tbdr=tbdr,
    )


def rbdc(
    predictions: Sequence[ScoredRegions],
    ground_truth: Sequence[TrackRegions],
    num_frames: int,
    iou_threshold: float = 0.1,
    track_fraction: float = 0.1,
) -> float:
    """Region-based detection criterion in [0, 1]; see :func:`rbdc_tbdc` for the arguments."""
    return rbdc_tbdc(predictions, ground_truth, num_frames, iou_threshold, track_fraction).rbdc


def tbdc(
    predictions: Sequence[ScoredRegions],
    ground_truth: Sequence[TrackRegions],
    num_frames: int,
    iou_threshold: float = 0.1,
    track_fraction: float = 0.1,
) -> float:
    """Track-based detection criterion in [0, 1]; see :func:`rbdc_tbdc` for the arguments."""
    return rbdc_tbdc(predictions, ground_truth, num_frames, iou_threshold, track_fraction).tbdc
