"""Per-region overlap (PRO) and its normalised area AUPRO, the MVTec AD segmentation metric."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sspcab_jax.metrics.image import check_pair


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
    scores, labels = check_pair(anomaly_maps, masks)
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
