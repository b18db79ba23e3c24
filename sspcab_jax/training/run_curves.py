"""The curves of a run's ``figures/``: score histogram, image / pixel ROC and the PRO curve.

Built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display); each function
returns its figure so callers (and tests) can read the drawn data back.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sspcab_jax import metrics
from sspcab_jax.detector import Calibration

PRO_FPR_LIMIT = 0.3  # the MVTec AD convention AUPRO integrates to
MAX_CURVE_POINTS = 2000  # pooled pixels give millions of ROC points; a few thousand draw the same


def score_histogram(
    scores, labels, threshold: float | None = None, *, what: str = "image", note: str = ""
) -> Figure:
    """Histogram of normal vs anomalous scores on shared bins, the threshold as a vertical line.

    Args:
      scores: ``[N]`` scores.
      labels: ``[N]`` 0 (normal) / 1 (anomalous).
      threshold: the calibrated threshold (a dashed line labelled with its value), or None.
      what: what is scored (``'image'``, ``'frame'``), in the axis label.
      note: appended to the title (e.g. why there is no threshold).

    Returns:
      The figure (Agg canvas); its one axes holds the threshold line.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    anomalous = np.asarray(labels).reshape(-1) > 0
    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bins = np.histogram_bin_edges(scores, bins=int(np.clip(scores.size // 3, 5, 40)))
    for name, keep, colour in (
        ("normal", ~anomalous, "tab:blue"),
        ("anomalous", anomalous, "tab:red"),
    ):
        ax.hist(scores[keep], bins, alpha=0.6, color=colour, label=f"{name} ({keep.sum()})")
    if threshold is not None:
        ax.axvline(
            threshold, color="black", ls="--", lw=1.2, label=f"calibrated threshold {threshold:.4g}"
        )
    ax.set_xlabel(f"{what} score")
    ax.set_ylabel(f"{what}s")
    ax.set_title(f"Test {what} scores" + (f" ({note})" if note else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.unique(np.linspace(0, x.size - 1, min(x.size, MAX_CURVE_POINTS)).astype(np.int64))
    return x[keep], y[keep]


def _unavailable(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _roc_panel(ax: Axes, title: str, scores, truth, threshold: float | None) -> None:
    scores, truth = np.asarray(scores).reshape(-1), np.asarray(truth).reshape(-1) > 0
    if truth.all() or not truth.any():
        _unavailable(ax, title, "undefined: needs normal and anomalous samples")
        return
    fpr, tpr, _ = metrics.roc_curve(scores, truth)
    ax.plot(*_thin(fpr, tpr), lw=1.2, label=f"AUROC {100 * np.trapezoid(tpr, fpr):.1f}")
    if threshold is not None:
        flagged = scores > threshold
        point = (flagged[~truth].mean(), flagged[truth].mean())
        ax.plot(*point, "o", color="black", ms=5, label="calibrated threshold")
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="gray")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)


def pro_curve_up_to(maps, masks, fpr_limit: float = PRO_FPR_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve (:func:`sspcab_jax.metrics.pro_curve`) cut at ``fpr_limit``.

    Returns:
      ``(fpr, pro)``, the last point at exactly ``fpr_limit`` (interpolated on the segment that
      crosses it), so ``trapezoid(pro, fpr) / fpr_limit`` is the AUPRO.
    """
    fpr, pro = metrics.pro_curve(maps, masks)
    keep = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:keep], pro[:keep]
    if keep < fpr.size and x[-1] < fpr_limit:
        t = (fpr_limit - fpr[keep - 1]) / (fpr[keep] - fpr[keep - 1])
        x = np.append(x, fpr_limit)
        y = np.append(y, pro[keep - 1] + t * (pro[keep] - pro[keep - 1]))
    return x, y


def _pro_panel(ax: Axes, maps, masks, threshold: float | None) -> None:
    title = f"PRO curve (FPR <= {PRO_FPR_LIMIT})"
    if not masks.any() or masks.all():
        _unavailable(ax, title, "undefined: needs defect and normal pixels")
        return
    fpr, pro = pro_curve_up_to(maps, masks)
    area = np.trapezoid(pro, fpr) / PRO_FPR_LIMIT
    ax.plot(*_thin(fpr, pro), lw=1.2, label=f"AUPRO {100 * area:.1f}")
    ax.set(xlim=(0, PRO_FPR_LIMIT), ylim=(0, 1.01), xlabel="false positive rate (pixels)")
    ax.set_ylabel("per-region overlap")
    ax.set_title(title, fontsize=9)
    if threshold is not None:
        fp_rate = float((maps[~masks] > threshold).mean())
        ax.axvline(fp_rate, color="black", ls="--", lw=1, label=f"calibrated (FPR {fp_rate:.3f})")
    ax.legend(loc="lower right", fontsize=7)


def roc_pro_figure(outputs: dict[str, np.ndarray], calibration: Calibration) -> Figure:
    """Image ROC, pixel ROC and PRO curve panels; a panel that is undefined says why.

    Args:
      outputs: the test outputs (``score``, ``label``, ``anomaly_map``, optionally ``mask``).
      calibration: marks the calibrated operating points when it has thresholds.

    Returns:
      The figure (Agg canvas), three panels.
    """
    fig = Figure(figsize=(12.0, 4.0))
    FigureCanvasAgg(fig)
    image_ax, pixel_ax, pro_ax = fig.subplots(1, 3)
    image_t = calibration.image_threshold if calibration.available else None
    pixel_t = calibration.pixel_threshold if calibration.available else None
    _roc_panel(image_ax, "Image ROC", outputs["score"], outputs["label"], image_t)
    if "mask" in outputs:
        masks = outputs["mask"] >= 0.5
        _roc_panel(pixel_ax, "Pixel ROC", outputs["anomaly_map"], masks, pixel_t)
        _pro_panel(pro_ax, outputs["anomaly_map"], masks, pixel_t)
    else:
        _unavailable(pixel_ax, "Pixel ROC", "no ground-truth masks")
        _unavailable(pro_ax, "PRO curve", "no ground-truth masks")
    fig.tight_layout()
    return fig
