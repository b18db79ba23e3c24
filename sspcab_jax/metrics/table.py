"""Per-category metric table, MVTec-paper style: each category's metrics, a mean row, Markdown."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sspcab_jax.metrics.image import (
    ap_from_counts,
    auroc_from_counts,
    classifier_counts,
    f1_max_from_counts,
)
from sspcab_jax.metrics.pro import aupro

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
    image = (auroc_from_counts(counts), ap_from_counts(counts), f1_max_from_counts(counts))
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
        pixel_auroc=auroc_from_counts(pixel_counts),
        pixel_ap=ap_from_counts(pixel_counts),
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
