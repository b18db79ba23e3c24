"""Pictures of a finished run, written to ``<workdir>/figures/`` by training and ``train.evaluate``.

Image runs get three PNGs, all drawn from the test outputs the evaluation already computed (the
network is not run again; only the shown test images are read back from the dataset):

* ``worst_cases.png``: image | anomaly map | calibrated defect mask | ground truth, one row per
  test image: the anomalous images with the lowest scores first (the worst misses), then the
  normal images with the highest scores (the worst false alarms).
* ``score_histogram.png``: image scores of normal vs anomalous test images, with the calibrated
  image threshold drawn.
* ``roc_pro.png``: image ROC, pixel ROC and the PRO curve up to the false-positive rate AUPRO
  integrates to, each with the calibrated operating point.

Video runs get ``score_histogram.png`` of their frame scores (``frame_scores.npz``); they have no
calibrated threshold. The worst-cases grid is drawn here, the curves in
:mod:`sspcab_jax.training.run_curves`.
"""

from __future__ import annotations

import logging
import pathlib
import textwrap
import time
from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sspcab_jax import data, viz
from sspcab_jax.detector import Calibration
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.run_curves import roc_pro_figure, score_histogram
from sspcab_jax.training.video_eval import load_frame_scores

logger = logging.getLogger(__name__)

FOLDER = "figures"


class WorstCases(NamedTuple):
    """Test-image indices to show, worst first.

    Attributes:
      misses: ``[<= num_misses]`` anomalous images, lowest score first.
      false_alarms: ``[<= num_false_alarms]`` normal images, highest score first.
    """

    misses: np.ndarray
    false_alarms: np.ndarray


def worst_cases(scores, labels, num_misses: int = 8, num_false_alarms: int = 8) -> WorstCases:
    """The anomalous images scored lowest and the normal images scored highest.

    The calibrated normalisation is monotone in the raw score, so ordering by raw scores is
    ordering by normalised scores, without the ties its clipping to [0, 1] makes. Equal scores
    keep the test order.

    Args:
      scores: ``[N]`` raw image scores.
      labels: ``[N]`` 0 (normal) / 1 (anomalous).
      num_misses: most anomalous images returned.
      num_false_alarms: most normal images returned.

    Returns:
      The indices, worst first.
    """
    scores = np.asarray(scores, np.float64)
    anomalous = np.asarray(labels) > 0
    if scores.shape != anomalous.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must both be [N], got {scores.shape}, {labels.shape}")
    positives, negatives = np.flatnonzero(anomalous), np.flatnonzero(~anomalous)
    misses = positives[np.argsort(scores[positives], kind="stable")]
    false_alarms = negatives[np.argsort(-scores[negatives], kind="stable")]
    return WorstCases(misses[:num_misses], false_alarms[:num_false_alarms])


def _row_label(score: float, anomalous: bool, calibration: Calibration) -> str:
    kind = "anomalous" if anomalous else "normal"
    if not calibration.available:
        return f"{kind}, score {score:.4g}"
    flagged = bool(calibration.is_anomalous(score))
    verdict = {True: "caught", False: "MISSED"} if anomalous else {True: "FALSE ALARM", False: "ok"}
    normalized = float(calibration.normalize_scores(np.array([score]))[0])
    return f"{kind}, {verdict[flagged]}\nscore {score:.4g} ({normalized:.2f})"


GAP = 2  # pixels between the panels of the worst-cases mosaic


def worst_cases_mosaic(
    images: np.ndarray,
    outputs: dict[str, np.ndarray],
    rows: Sequence[int],
    calibration: Calibration,
) -> tuple[np.ndarray, list[str]]:
    """The worst-cases grid as one RGB image: a row per test image, a column per view.

    Columns: image | anomaly map over the image | defect mask (calibrated) | ground truth.
    Calibrated maps are shown normalised (0.5 = pixel threshold, the colormap's middle);
    without thresholds the maps share the shown maps' range and the defect-mask column is left
    out, as is the ground truth without masks. Panels are ``GAP`` white pixels apart.

    Args:
      images: ``[R, H, W, 3]`` the shown test images, in ``rows`` order, float in [0, 1].
      outputs: the test outputs (``anomaly_map [N, H, W]``, optionally ``mask [N, H, W]``).
      rows: ``[R]`` indices into the outputs, top row first.
      calibration: the run's calibration.

    Returns:
      ``(mosaic [R * (H + GAP) - GAP, C * (W + GAP) - GAP, 3] float in [0, 1], column names)``.
    """
    rows = list(rows)
    maps = outputs["anomaly_map"][rows]
    columns = ["image", "anomaly map"]
    if calibration.available:
        columns.append(f"defect mask (map > {calibration.pixel_threshold:.4g})")
        shown, lo, hi = calibration.normalize_maps(maps), 0.0, 1.0
    else:
        shown, lo, hi = maps, float(maps.min()), float(maps.max())
    if "mask" in outputs:
        columns.append("ground truth")
    height, width = maps.shape[1:]
    mosaic = np.ones(
        (len(rows) * (height + GAP) - GAP, len(columns) * (width + GAP) - GAP, 3), np.float32
    )
    for r, index in enumerate(rows):
        panels = [images[r], viz.overlay(images[r], shown[r], vmin=lo, vmax=hi) / 255.0]
        if calibration.available:
            panels.append(calibration.defect_mask(maps[r]))
        if "mask" in outputs:
            panels.append(outputs["mask"][index] >= 0.5)
        for c, panel in enumerate(panels):
            panel = np.asarray(panel, np.float32)
            y, x = r * (height + GAP), c * (width + GAP)
            mosaic[y : y + height, x : x + width] = panel[..., None] if panel.ndim == 2 else panel
    return mosaic, columns


def worst_cases_figure(
    images: np.ndarray,
    outputs: dict[str, np.ndarray],
    rows: Sequence[int],
    calibration: Calibration,
    panel_size: float = 1.3,
) -> Figure:
    """:func:`worst_cases_mosaic` with each row's verdict and score, and the column names.

    One axes shows the whole mosaic (dozens of axes would take seconds to draw).

    Args:
      images: ``[R, H, W, 3]`` the shown test images, in ``rows`` order, float in [0, 1].
      outputs: the test outputs (``score [N]``, ``anomaly_map [N, H, W]``, ``label [N]``,
        optionally ``mask [N, H, W]``).
      rows: ``[R]`` indices into the outputs, top row first.
      calibration: the run's calibration (the title says when it is unavailable).
      panel_size: side of one panel in inches.

    Returns:
      The figure (Agg canvas); its axes holds a text per row label and column name.
    """
    rows = list(rows)
    mosaic, columns = worst_cases_mosaic(images, outputs, rows, calibration)
    label_width = 1.5  # inches for the row labels on the left
    width = label_width + len(columns) * panel_size
    if calibration.available:
        order = f"image threshold {calibration.image_threshold:.4g} (normalised 0.5)"
    else:
        order = f"ordered by raw score: uncalibrated ({calibration.note or 'no thresholds'})"
    # Wrapped by hand so the title's height is known and it never covers the column names.
    title = "\n".join(
        ["Worst misses, then worst false alarms", *textwrap.wrap(order, int(width * 13))]
    )
    top = 0.15 * (title.count("\n") + 1) + 0.3  # inches: title lines and the column names
    height = top + len(rows) * panel_size
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=7, y=1 - 0.05 / height, va="top")
    ax = fig.add_axes(
        (label_width / width, 0.0, len(columns) * panel_size / width, 1 - top / height)
    )
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    step_y, step_x = mosaic.shape[0] / len(rows), mosaic.shape[1] / len(columns)
    for c, name in enumerate(columns):
        ax.text((c + 0.5) * step_x, -2, name, ha="center", va="bottom", fontsize=6)
    for r, index in enumerate(rows):
        label = _row_label(
            float(outputs["score"][index]), bool(outputs["label"][index]), calibration
        )
        ax.text(-3, (r + 0.5) * step_y, label, ha="right", va="center", fontsize=6)
    return fig


def _save(fig: Figure, path: pathlib.Path) -> None:
    fig.savefig(path, dpi=80, format="png")


def write_image_figures(
    folder: pathlib.Path,
    config: ml_collections.ConfigDict,
    outputs: dict[str, np.ndarray],
    calibration: Calibration,
    test_source: Sequence,
    num_rows: int = 8,
) -> None:
    """Writes the three PNGs of an image run into ``folder`` (see the module docstring)."""
    cases = worst_cases(outputs["score"], outputs["label"], num_rows, num_rows)
    rows = [int(i) for i in np.concatenate(cases)]
    if rows:
        d = config.data
        images = np.stack(
            [
                data.prepare_example(
                    test_source[i], image_size=d.image_size, resize=d.get("resize", "pil")
                )["image"]
                for i in rows
            ]
        )
        _save(worst_cases_figure(images, outputs, rows, calibration), folder / "worst_cases.png")
    threshold = calibration.image_threshold if calibration.available else None
    note = "" if calibration.available else "uncalibrated: no threshold"
    _save(
        score_histogram(outputs["score"], outputs["label"], threshold, note=note),
        folder / "score_histogram.png",
    )
    _save(roc_pro_figure(outputs, calibration), folder / "roc_pro.png")


def write_video_figures(folder: pathlib.Path, scores_path: pathlib.Path) -> None:
    """Writes the frame-score histogram of a video run from its ``frame_scores.npz``."""
    videos = load_frame_scores(scores_path).values()
    scores = np.concatenate([v["scores"] for v in videos])
    labels = np.concatenate([v["labels"] for v in videos])
    note = "as evaluated; video runs have no calibrated threshold"
    _save(score_histogram(scores, labels, what="frame", note=note), folder / "score_histogram.png")


def write_figures(
    workdir: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    calibration: Calibration,
    test_source: Sequence | None = None,
    outputs: dict[str, np.ndarray] | None = None,
) -> pathlib.Path | None:
    """Writes ``<workdir>/figures/`` from a run's test outputs.

    Args:
      workdir: the run's directory.
      config: the run's config.
      calibration: its calibration (may be unavailable: figures then say so).
      test_source: the test split (the worst cases' images are read back from it).
      outputs: :func:`sspcab_jax.training.evaluation.predict` of the test split (image runs);
        video runs read ``<workdir>/frame_scores.npz`` instead.

    Returns:
      The folder, or None when there was nothing to draw (logged in one line).
    """
    start = time.perf_counter()
    workdir = pathlib.Path(workdir)
    folder = workdir / FOLDER
    if is_video(config):
        scores_path = workdir / "frame_scores.npz"
        if not scores_path.is_file():
            logger.info("figures: skipped (no %s to plot)", scores_path)
            return None
        folder.mkdir(exist_ok=True)
        write_video_figures(folder, scores_path)
    elif outputs is None or "label" not in outputs or test_source is None:
        logger.info("figures: skipped (no labelled test outputs)")
        return None
    else:
        folder.mkdir(exist_ok=True)
        write_image_figures(folder, config, outputs, calibration, test_source)
    logger.info("figures written to %s in %.2f s", folder, time.perf_counter() - start)
    return folder
