"""Anomaly-detection metrics: image/pixel level (AUROC, AP, F1-max, AUPRO) and video level."""

from sspcab_jax.metrics.image import (
    ClassifierCounts,
    auroc,
    average_precision,
    binarize_mask,
    classifier_counts,
    f1_max,
    roc_curve,
)
from sspcab_jax.metrics.pro import aupro, label_regions, pro_curve
from sspcab_jax.metrics.regions import (
    ScoredRegions,
    TrackRegions,
    box_iou,
    regions_from_maps,
    tracks_from_masks,
)
from sspcab_jax.metrics.table import (
    CategoryMetrics,
    category_metrics,
    format_markdown_table,
    metrics_table,
)
from sspcab_jax.metrics.video import (
    RegionTrackCurves,
    gaussian_smooth,
    macro_auc,
    micro_auc,
    minmax_normalise,
    postprocess_scores,
    rbdc,
    rbdc_tbdc,
    tbdc,
)

__all__ = [
    "CategoryMetrics",
    "ClassifierCounts",
    "RegionTrackCurves",
    "ScoredRegions",
    "TrackRegions",
    "aupro",
    "auroc",
    "average_precision",
    "binarize_mask",
    "box_iou",
    "category_metrics",
    "classifier_counts",
    "f1_max",
    "format_markdown_table",
    "gaussian_smooth",
    "label_regions",
    "macro_auc",
    "metrics_table",
    "micro_auc",
    "minmax_normalise",
    "postprocess_scores",
    "pro_curve",
    "rbdc",
    "rbdc_tbdc",
    "regions_from_maps",
    "roc_curve",
    "tbdc",
    "tracks_from_masks",
]
