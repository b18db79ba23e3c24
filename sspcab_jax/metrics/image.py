"""Image- and pixel-level anomaly-detection metrics: AUROC, AP, F1-max, AUPRO.

Every curve is computed from one sort of the scores followed by cumulative sums, with one curve
point per distinct score (ties are never split), the same convention as scikit-learn's
``roc_curve`` / ``precision_recall_curve``. Pixel-level metrics are the same functions applied to
all pixels of a category pooled into one curve (``reference/draem_sspcab.md`` §3.8): pass the
stacked maps ``[N, H, W]`` and binary masks ``[N, H, W]``; inputs of any shape are flattened.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage


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


def _check_pair(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    scores, labels = _check_pair(scores, labels)
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


def _auroc_from_counts(counts: ClassifierCounts) -> float:
    _require_both_classes(counts, "AUROC")
    fpr, tpr, _ = _roc_from_counts(counts)
    return float(np.trapezoid(tpr, fpr))


def _ap_from_counts(counts: ClassifierCounts) -> float:
    if counts.tps[-1] == 0:
        raise ValueError("average precision is undefined: labels contain no positive sample")
    precision = counts.tps / (counts.tps + counts.fps)
    recall = counts.tps / counts.tps[-1]
    # Step-wise sum of precision weighted by the recall increment (no interpolation).
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _f1_max_from_counts(counts: ClassifierCounts) -> float:
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
    return _auroc_from_counts(classifier_counts(scores, labels))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) * P_k, no interpolation.

    Args:
        scores: [...] anomaly scores.
        labels: [...] binary labels of the same shape (needs at least one positive).

    Returns:
        AP in [0, 1].
    """
    return _ap_from_counts(classifier_counts(scores, labels))


def f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 score over all distinct score thresholds (predict anomalous when score >= t).

    Args:
        scores: [...] anomaly scores.
        labels: [...] binary labels of the same shape (needs at least one positive).

    Returns:
        max_t F1(t) in [0, 1].
    """
    return _f1_max_from_counts(classifier_counts(scores, labels))


def _trapezoid_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) for x in [x[0], x_max]; x non-decreasing.

    The curve is cut at x_max with linear interpolation on the segment that crosses it.
    """
    keep = int(np.searchsorted(x, x_max, side="right"))
    xs, ys = x[:keep], y[:keep]
    if keep < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[keep - 1], x[keep], y[keep - 1], y[keep]
        y_cut = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        xs = np.append(xs, x_max)
        ys = np.append(ys, y_cut)
    return float(np.trapezoid(ys, xs))


def _structure(connectivity: int) -> np.ndarray:
    if connectivity == 8:
        return np.ones((3, 3), dtype=bool)
    if connectivity == 4:
        return ndimage.generate_binary_structure(2, 1)
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def label_regions(masks: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected components of each 2-D mask, numbered globally across the stack.

    Args:
        masks: [N, H, W] binary masks.
        connectivity: 8 (diagonal neighbours connect) or 4.

    Returns:
        ``(labels [N, H, W] int, count)``; 0 is background, components never span two images.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    # A 3-D structure with the 2-D neighbourhood only in the middle slice: one scipy call labels
    # every image at once without linking components across the stack axis.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = _structure(connectivity)
    labels, count = ndimage.label(masks, structure=structure)
    return labels, int(count)


def pro_curve(
    anomaly_maps: np.ndarray, masks: np.ndarray, connectivity: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region overlap (PRO) against false-positive rate, one point per distinct score.

    PRO(t) is the mean over all ground-truth connected components (of all images) of the
    fraction of the component's pixels with score >= t; FPR(t) is the fraction of normal pixels
    (mask == 0, in every image) with score >= t.

    Args:
        anomaly_maps: [N, H, W] pixel scores.
        masks: [N, H, W] binary ground truth.
        connectivity: 8 (default, diagonal pixels belong to the same defect) or 4.

    Returns:
        ``(fpr [T+1], pro [T+1])`` starting at (0, 0), FPR non-decreasing, ending at (1, 1).
    """
    anomaly_maps = np.asarray(anomaly_maps)
    if anomaly_maps.ndim != 3:
        raise ValueError(f"anomaly_maps must be [N, H, W], got shape {anomaly_maps.shape}")
    scores, labels = _check_pair(anomaly_maps, masks)
    regions, n_regions = label_regions(labels.reshape(anomaly_maps.shape), connectivity)
    regions = regions.ravel()
    n_normal = int(np.count_nonzero(~labels))
    if n_regions == 0:
        raise ValueError("PRO is undefined: masks contain no anomalous pixel")
    if n_normal == 0:
        raise ValueError("PRO is undefined: masks contain no normal pixel")
    # Each anomalous pixel adds 1 / (n_regions * |its region|) to PRO once the threshold passes it.
    sizes = np.bincount(regions, minlength=n_regions + 1).astype(np.float64)
    weight_per_region = np.zeros(n_regions + 1)
    weight_per_region[1:] = 1.0 / (n_regions * sizes[1:])
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    idx = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [sorted_scores.size - 1]])
    pro = np.cumsum(weight_per_region[regions[order]])[idx]
    fp = np.cumsum(~labels[order], dtype=np.int64)[idx]
    fpr = np.concatenate([[0.0], fp / n_normal])
    # Clip the float rounding of the weight sum so a full overlap reads exactly 1.
    pro = np.concatenate([[0.0], np.minimum(pro, 1.0)])
    return fpr, pro


def aupro(
    anomaly_maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3, connectivity: int = 8
) -> float:
    """Normalised area under the PRO curve up to a false-positive rate limit.

    The PRO-vs-FPR curve (see :func:`pro_curve`) is integrated with the trapezoid rule from
    FPR 0 to ``fpr_limit`` (linear interpolation at the cut) and divided by ``fpr_limit``, so a
    perfect detector scores 1.0. Connected components use 8-connectivity by default.

    Args:
        anomaly_maps: [N, H, W] pixel scores.
        masks: [N, H, W] binary ground truth (at least one anomalous and one normal pixel).
        fpr_limit: integration limit in (0, 1]; 0.3 is the MVTec AD convention.
        connectivity: 8 or 4.

    Returns:
        AUPRO in [0, 1].
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(anomaly_maps, masks, connectivity)
    return _trapezoid_up_to(fpr, pro, fpr_limit) / fpr_limit


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """Binarises a resized ground-truth mask the way the official DRAEM test does.

    DRAEM resizes the mask bilinearly, divides by 255 and truncates to uint8, so only pixels
    that are exactly 1.0 after the resize count as anomalous; soft edge pixels (0 < v < 1)
    become normal (``reference/draem_sspcab.md`` §3.8).

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


# --- Per-category table, MVTec-paper style ------------------------------------------------------

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_auroc", "Image AUROC"),
    ("image_ap", "Image AP"),
    ("image_f1_max", "Image F1-max"),
    ("pixel_auroc", "Pixel AUROC"),
    ("pixel_ap", "Pixel AP"),
    ("aupro", "AUPRO"),
)


class CategoryMetrics(NamedTuple):
    """The metrics reported per category; pixel-level entries are NaN when no maps were given."""

    image_auroc: float
    image_ap: float
    image_f1_max: float
    pixel_auroc: float = float("nan")
    pixel_ap: float = float("nan")
    aupro: float = float("nan")


def category_metrics(
    image_scores: np.ndarray,
    image_labels: np.ndarray,
    anomaly_maps: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    fpr_limit: float = 0.3,
    connectivity: int = 8,
) -> CategoryMetrics:
    """All metrics of one category.

    Args:
        image_scores: [N] image anomaly scores.
        image_labels: [N] binary image labels (1 = defective).
        anomaly_maps: optional [N, H, W] pixel scores; pixel metrics are pooled over all pixels.
        masks: optional [N, H, W] binary masks (see :func:`binarize_mask`); given with the maps.
        fpr_limit: AUPRO integration limit.
        connectivity: AUPRO connected-component connectivity (8 or 4).

    Returns:
        The category's :class:`CategoryMetrics`.
    """
    counts = classifier_counts(image_scores, image_labels)
    image = (_auroc_from_counts(counts), _ap_from_counts(counts), _f1_max_from_counts(counts))
    if anomaly_maps is None and masks is None:
        return CategoryMetrics(*image)
    if anomaly_maps is None or masks is None:
        raise ValueError("anomaly_maps and masks must be given together")
    if np.shape(anomaly_maps)[:1] != np.shape(image_scores):
        raise ValueError(
            f"anomaly_maps {np.shape(anomaly_maps)} must have one map per image score "
            f"{np.shape(image_scores)}"
        )
    # One sort of the pooled pixels serves both pixel AUROC and pixel AP.
    pixel_counts = classifier_counts(anomaly_maps, masks)
    return CategoryMetrics(
        *image,
        pixel_auroc=_auroc_from_counts(pixel_counts),
        pixel_ap=_ap_from_counts(pixel_counts),
        aupro=aupro(anomaly_maps, masks, fpr_limit, connectivity),
    )


def metrics_table(per_category: dict[str, CategoryMetrics]) -> dict[str, CategoryMetrics]:
    """Adds a ``"mean"`` row: the plain mean over categories of each column.

    A column missing (NaN) in any category has a NaN mean, so a partial mean is never reported.

    Args:
        per_category: category name -> metrics, in display order.

    Returns:
        A new dict with the categories followed by ``"mean"``.
    """
    if not per_category:
        raise ValueError("per_category is empty")
    if "mean" in per_category:
        raise ValueError("'mean' is reserved for the mean row; rename that category")
    values = np.array([list(m) for m in per_category.values()], dtype=np.float64)
    mean = CategoryMetrics(*(float(v) for v in values.mean(axis=0)))
    return {**per_category, "mean": mean}


def format_markdown_table(
    table: dict[str, CategoryMetrics], percent: bool = True, digits: int = 1
) -> str:
    """Formats a per-category table as Markdown; NaN entries print as an em dash.

    Args:
        table: category name -> metrics (e.g. the output of :func:`metrics_table`).
        percent: print values x100, as the papers do.
        digits: decimals per value.

    Returns:
        The Markdown table (no trailing newline).
    """
    if not table:
        raise ValueError("table is empty")
    scale = 100.0 if percent else 1.0
    lines = [
        "| Category | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
        "|---|" + "---:|" * len(TABLE_COLUMNS),
    ]
    for name, row in table.items():
        cells = [
            "—" if np.isnan(v) else f"{scale * v:.{digits}f}"
            for v in (getattr(row, key) for key, _ in TABLE_COLUMNS)
        ]
        label = f"**{name}**" if name == "mean" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
