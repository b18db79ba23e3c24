"""Figures: anomaly-map overlays, frame-score curves over a video, ROC curves (PNG).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot, no global
state, no display needed. Saved PNGs are exactly ``figsize * dpi`` pixels (no tight bounding box),
so callers can rely on the output size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from sspcab_jax.metrics.image import classifier_counts

PathLike = str | os.PathLike[str]


def _as_rgb_float(image: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1] or [H, W, 3] image (uint8 or float in [0, 1]) -> float [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def _normalise(values: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Blends a colour-mapped anomaly map over an image.

    Args:
        image: [H, W, 3], [H, W, 1] or [H, W] image, uint8 or float in [0, 1].
        anomaly_map: [H, W] scores; mapped to [0, 1] with ``vmin``/``vmax`` (default: the map's
            own min and max; a constant map shows as the colormap's low end).
        alpha: weight of the colour-mapped map in the blend.
        cmap: matplotlib colormap name.
        vmin: score shown as the colormap's low end.
        vmax: score shown as the colormap's high end.

    Returns:
        [H, W, 3] uint8 RGB.
    """
    rgb = _as_rgb_float(image)
    anomaly_map = np.asarray(anomaly_map)
    if anomaly_map.shape != rgb.shape[:2]:
        raise ValueError(
            f"anomaly_map must be [H, W] = {rgb.shape[:2]} like the image, got {anomaly_map.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = matplotlib.colormaps[cmap](_normalise(anomaly_map, vmin, vmax))[..., :3]
    blended = (1.0 - alpha) * rgb + alpha * heat
    return np.round(blended * 255.0).astype(np.uint8)


def outline_mask(
    image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Draws the one-pixel boundary of a boolean mask onto an RGB image.

    Args:
        image: [H, W, 3] uint8 RGB (e.g. an :func:`overlay`).
        mask: [H, W] bool; its pixels with a neighbour (4-connected) outside the mask, or on the
            image border, are painted.
        colour: RGB of the outline.

    Returns:
        A [H, W, 3] uint8 copy of ``image`` with the outline.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask must be [H, W] = {image.shape[:2]} like the image, got {mask.shape}"
        )
    inner = ndimage.binary_erosion(mask, border_value=0)
    out = np.array(image, np.uint8, copy=True)
    out[mask & ~inner] = colour
    return out


def draw_banner(
    image: np.ndarray,
    text: str,
    background: tuple[int, int, int],
    colour: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Writes ``text`` on a filled strip along the top of an image (e.g. a verdict).

    The strip is about 1/10 of the image height (at least 10 pixels, at most the image); the
    font shrinks until the text fits the width.

    Args:
        image: [H, W, 3] uint8 RGB.
        text: one line.
        background: RGB of the strip.
        colour: RGB of the text.

    Returns:
        A [H, W, 3] uint8 copy of ``image`` with the strip.
    """
    height, width = image.shape[:2]
    strip = min(height, max(10, round(height / 10)))
    picture = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, width - 1, strip - 1), fill=background)
    size = strip - 2
    font = ImageFont.load_default(size)
    while size > 4 and draw.textlength(text, font=font) > width - 2:
        size -= 1
        font = ImageFont.load_default(size)
    draw.text((1, strip / 2), text, fill=colour, font=font, anchor="lm")
    return np.asarray(picture)


def _save(fig: Figure, path: PathLike, dpi: int) -> str:
    FigureCanvasAgg(fig)
    path = os.fspath(path)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def plot_anomaly_maps(
    images: np.ndarray,
    masks: np.ndarray,
    runs: Mapping[str, np.ndarray],
    path: PathLike,
    panel_size: float = 2.0,
    dpi: int = 100,
    vmin: float | None = None,
    vmax: float | None = None,
) -> str:
    """Localisation figure: one row per sample of image | ground truth | overlay per run.

    With two runs (e.g. ``{"DRAEM": maps_a, "DRAEM+SSPCAB": maps_b}``) their overlays sit side by
    side. Within a row every run shares one colour scale so the maps are comparable.

    Args:
        images: [N, H, W, 3] or [N, H, W] images (uint8 or float in [0, 1]).
        masks: [N, H, W] ground-truth masks.
        runs: run name -> [N, H, W] anomaly maps (one or more runs).
        path: output PNG path.
        panel_size: side of each panel in inches.
        dpi: resolution; the PNG is ``(2 + len(runs)) * panel_size * dpi`` wide and
            ``N * panel_size * dpi`` high.
        vmin: fixed low end of the colour scale (default: per-row minimum over runs).
        vmax: fixed high end of the colour scale (default: per-row maximum over runs).

    Returns:
        The path written.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if not runs:
        raise ValueError("runs is empty: give at least one run's anomaly maps")
    if masks.ndim != 3 or images.shape[:3] != masks.shape:
        raise ValueError(f"masks must be [N, H, W] matching images {images.shape}: {masks.shape}")
    for name, maps in runs.items():
        if np.shape(maps) != masks.shape:
            raise ValueError(f"run {name!r}: maps {np.shape(maps)} must match masks {masks.shape}")
    n, cols = masks.shape[0], 2 + len(runs)
    fig = Figure(figsize=(cols * panel_size, n * panel_size))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        row_maps = [np.asarray(m[i], dtype=np.float64) for m in runs.values()]
        lo = min(float(m.min()) for m in row_maps) if vmin is None else vmin
        hi = max(float(m.max()) for m in row_maps) if vmax is None else vmax
        panels = [_as_rgb_float(images[i]), masks[i]]
        panels += [overlay(images[i], m, vmin=lo, vmax=hi) for m in row_maps]
        titles = ["Image", "Ground truth", *runs.keys()]
        for j, (ax, panel) in enumerate(zip(axes[i], panels, strict=True)):
            ax.imshow(panel, cmap="gray" if j == 1 else None, vmin=0, vmax=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.03, hspace=0.03)
    return _save(fig, path, dpi)


def _intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) runs of label 1 in a [T] 0/1 sequence."""
    padded = np.concatenate([[0], np.asarray(labels).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_frame_scores(
    runs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    path: PathLike,
    title: str | None = None,
    figsize: tuple[float, float] = (8.0, 3.0),
    dpi: int = 100,
) -> str:
    """Frame-level anomaly score over one test video, abnormal intervals shaded.

    Args:
        runs: run name -> [T] frame scores (e.g. baseline and +SSPCAB), overlaid with a legend.
        labels: [T] binary ground-truth frame labels (1 = abnormal frame).
        path: output PNG path.
        title: optional title (e.g. the video name and each run's AUC).
        figsize: figure size in inches.
        dpi: resolution; the PNG is ``figsize * dpi`` pixels.

    Returns:
        The path written.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty [T] array, got shape {labels.shape}")
    if not runs:
        raise ValueError("runs is empty: give at least one run's frame scores")
    for name, scores in runs.items():
        if np.shape(scores) != labels.shape:
            raise ValueError(f"run {name!r}: scores {np.shape(scores)} must match {labels.shape}")
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    for k, (start, stop) in enumerate(_intervals(labels)):
        # Frame t covers [t - 0.5, t + 0.5) so a one-frame anomaly is still visible.
        label = "ground-truth anomaly" if k == 0 else None
        ax.axvspan(start - 0.5, stop - 0.5, color="tab:red", alpha=0.2, lw=0, label=label)
    frames = np.arange(labels.size)
    for name, scores in runs.items():
        ax.plot(frames, np.asarray(scores, dtype=np.float64), lw=1.2, label=name)
    ax.set_xlim(-0.5, labels.size - 0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def _decimated_roc(
    scores: np.ndarray, labels: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC points thinned to at most ``max_points`` (ends kept) plus the exact AUROC."""
    counts = classifier_counts(scores, labels)
    if counts.tps[-1] == 0 or counts.fps[-1] == 0:
        raise ValueError("a ROC curve needs both normal and anomalous samples")
    fpr = np.concatenate([[0.0], counts.fps / counts.fps[-1]])
    tpr = np.concatenate([[0.0], counts.tps / counts.tps[-1]])
    area = float(np.trapezoid(tpr, fpr))
    # Pooled pixels give millions of points; a few thousand draw the same line.
    keep = np.unique(np.linspace(0, fpr.size - 1, min(fpr.size, max_points)).astype(np.int64))
    return fpr[keep], tpr[keep], area


def plot_roc_curves(
    image: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: PathLike,
    pixel: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    panel_size: float = 4.0,
    dpi: int = 100,
    max_points: int = 2000,
) -> str:
    """ROC curves per category: an image-level panel and, optionally, a pixel-level panel.

    Args:
        image: category -> (image scores [N], image labels [N]).
        path: output PNG path.
        pixel: optional category -> (anomaly maps [N, H, W], binary masks [N, H, W]), pooled.
        panel_size: side of each square panel in inches.
        dpi: resolution; the PNG is ``panels * panel_size * dpi`` wide, ``panel_size * dpi`` high.
        max_points: most points drawn per curve (the AUROC in the legend uses all of them).

    Returns:
        The path written.
    """
    if not image:
        raise ValueError("image is empty: give at least one category")
    panels = [("Image-level ROC", image)]
    if pixel:
        panels.append(("Pixel-level ROC", pixel))
    fig = Figure(figsize=(len(panels) * panel_size, panel_size))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels, strict=True):
        for name, (scores, labels) in curves.items():
            fpr, tpr, area = _decimated_roc(scores, labels, max_points)
            ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUROC {100 * area:.1f})")
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="gray")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", title=title)
        ax.set_ylabel("true positive rate")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=6)
    fig.tight_layout()
    return _save(fig, path, dpi)
