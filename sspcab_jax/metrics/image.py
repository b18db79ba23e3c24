"""Image- and pixel-level classification metrics: ROC, AUROC, AP, F1-max; DRAEM's mask binarisation.

Every curve is computed from one sort of the scores followed by cumulative sums, with one curve
point per distinct score (ties are never split), the same convention as scikit-learn's
``roc_curve`` / ``precision_recall_curve``. Pixel-level metrics are the same functions applied to
all pixels of a category pooled into one curve, as the official DRAEM ``test_DRAEM.py`` does:
pass the stacked maps ``[N, H, W]`` and binary masks ``[N, H, W]``; inputs of any shape are
flattened.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ClassifierCounts(NamedTuple):
    """Cumulative counts at each distinct threshold, thresholds in decreasing order.

    Attributes:
        fps: [T] number of negatives with score >= threshold.
        tps: [T] number of positives with score >= threshold.
        thresholds: [T] the distinct scores, decreasing.
    """

    fps: np.ndarray
    tps: np.ndarray
    thresholds: np.ndarray


def check_pair(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattens and validates scores and binary labels; returns (scores [M], labels bool [M])."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must have the same shape, got {scores.shape} and {labels.shape}"
        )
    if scores.size == 0:
        raise ValueError("scores and labels are empty")
    scores = scores.ravel()
    labels = labels.ravel()
    if not (np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    if np.issubdtype(scores.dtype, np.floating) and not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    if labels.dtype != np.bool_:
        if not np.all((labels == 0) | (labels == 1)):
            raise ValueError(
                "labels must be binary (0/1 or bool); binarise soft masks first "
                "(see sspcab_jax.metrics.binarize_mask)"
            )
        labels = labels.astype(np.bool_)
    return scores, labels


def classifier_counts(scores: np.ndarray, labels: np.ndarray) -> ClassifierCounts:
    """Counts true and false positives at every distinct score, fully vectorised.

    Args:
        scores: [...] real anomaly scores (higher = more anomalous).
        labels: [...] binary labels of the same shape (1 = anomalous).

    Returns:
        The cumulative counts, one entry per distinct score, thresholds decreasing.

    Raises:
        ValueError: on mismatched shapes, empty input, non-finite scores or non-binary labels.
    """
    scores, labels = check_pair(scores, labels)
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    # The last index of each block of equal scores: one curve point per distinct threshold.
    last_of_block = np.flatnonzero(np.diff(sorted_scores))
    idx = np.concatenate([last_of_block, [sorted_scores.size - 1]])
    tps = np.cumsum(labels[order], dtype=np.int64)[idx]
    fps = idx + 1 - tps
    return ClassifierCounts(fps=fps, tps=tps, thresholds=sorted_scores[idx])


def _require_both_classes(counts: ClassifierCounts, what: str) -> None:
    if counts.tps[-1] == 0:
        raise ValueError(f"{what} is undefined: labels contain no positive (anomalous) sample")
    if counts.fps[-1] == 0:
        raise ValueError(f"{what} is undefined: labels contain no negative (normal) sample")


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with one point per distinct score, starting at (0, 0).

    Args:
        scores: [...] anomaly scores.
        labels: [...] binary labels of the same shape.

    Returns:
        ``(fpr [T+1], tpr [T+1], thresholds [T+1])``; the first threshold is ``inf``.
    """
    counts = classifier_counts(scores, labels)
    _require_both_classes(counts, "ROC curve")
    return _roc_from_counts(counts)


def _roc_from_counts(counts: ClassifierCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fpr = np.concatenate([[0.0], counts.fps / counts.fps[-1]])
    tpr = np.concatenate([[0.0], counts.tps / counts.tps[-1]])
    thresholds = np.concatenate([[np.inf], counts.thresholds.astype(np.float64)])
    return fpr, tpr, thresholds


def auroc_from_counts(counts: ClassifierCounts) -> float:
    """AUROC from :func:`classifier_counts` (one sort shared by several metrics)."""
    _require_both_classes(counts, "AUROC")
    fpr, tpr, _ = _roc_from_counts(counts)
    return float(np.trapezoid(tpr, fpr))


def ap_from_counts(counts: ClassifierCounts) -> float:
    """Average precision from :func:`classifier_counts`."""
    if counts.tps[-1] == 0:
        raise ValueError("average precision is undefined: labels contain no positive sample")
    precision = counts.tps / (counts.tps + counts.fps)
    recall = counts.tps / counts.tps[-1]
    # Step-wise sum of precision weighted by the recall increment (no interpolation).
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def f1_max_from_counts(counts: ClassifierCounts) -> float:
    """F1-max from :func:`classifier_counts`."""
    if counts.tps[-1] == 0:
        raise ValueError("F1-max is undefined: labels contain no positive sample")
    # F1 = 2TP / (2TP + FP + FN) with FN = P - TP; the denominator is never 0 because P > 0.
    f1 = 2 * counts.tps / (counts.tps + counts.fps + counts.tps[-1])
    return float(np.max(f1))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid over one point per distinct score).

    Args:
        scores: [...] anomaly scores, e.g. image scores [N] or pooled pixel maps [N, H, W].
        labels: [...] binary labels of the same shape (1 = anomalous).

    Returns:
        AUROC in [0, 1].

    Raises:
        ValueError: if shapes differ, input is empty, or labels hold a single class.
    """
    return auroc_from_counts(classifier_counts(scores, labels))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) * P_k, no interpolation.

    Args:
        scores: [...] anomaly scores.
        labels: [...] binary labels of the same shape (needs at least one positive).

    Returns:
        AP in [0, 1].
    """
    return ap_from_counts(classifier_counts(scores, labels))


def f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 score over all distinct score thresholds (predict anomalous when score >= t).

    Args:
        scores: [...] anomaly scores.
        labels: [...] binary labels of the same shape (needs at least one positive).

    Returns:
        max_t F1(t) in [0, 1].
    """
    return f1_max_from_counts(classifier_counts(scores, labels))


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """Binarises a resized ground-truth mask the way the official DRAEM test does.

    DRAEM resizes the mask bilinearly, divides by 255 and truncates to uint8, so only pixels
    that are exactly 1.0 after the resize count as anomalous; soft edge pixels (0 < v < 1)
    become normal.

    Args:
        mask: [...] float mask in [0, 1] (already resized and divided by 255), or an integer
            mask in 0..255 (255 = anomalous).

    Returns:
        [...] uint8 array of 0/1.
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        raise ValueError("mask is empty")
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.integer):
        mask = mask / 255.0
    if np.isnan(mask).any() or mask.min() < 0:
        raise ValueError("mask must hold non-negative finite values")
    # Truncation toward zero: 1.0 (or the float rounding just above it) -> 1, anything below -> 0.
    return (mask >= 1.0).astype(np.uint8)
