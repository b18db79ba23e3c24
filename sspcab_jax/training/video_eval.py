"""Video evaluation: frame scores -> micro/macro AUC; pixel maps -> scored regions -> RBDC/TBDC.

The conventions are those of public anomaly-detection code, each a field of ``config.video_eval``
so that every reported number says how it was made:

* frame score: ``'mean'`` (the frame's reconstruction MSE) or ``'max'`` (the maximum of the
  spatially smoothed error map, the whole-frame analogue of object-centric models' "max over the
  frame's objects");
* ``sigma``: temporal Gaussian smoothing of each video's frame scores in frames (0 = none;
  AED-MAE's ``inference.py`` uses 11 on Avenue and 282, then per-video min-max, on
  ShanghaiTech), then optional per-video min-max ``normalise``; macro AUC with optional
  ``pad_each_video`` (AED-MAE and UBnormal prepend a (label 0, score 0) and append a (label 1,
  score 1) frame to every video, which needs scores in [0, 1], so it requires ``normalise``).
  The unsmoothed ``micro_auc_raw`` / ``macro_auc_raw`` are reported too;
* regions: the error map is smoothed spatially (``map_sigma`` pixels), thresholded
  (``region_threshold``, or when it is 0 the ``region_quantile`` of all test pixels, a
  label-free statistic) and split into 8-connected components of at least ``min_region_area``
  pixels; a region's score is its maximum. Ground-truth tracks come from the pixel masks
  (:func:`~sspcab_jax.metrics.tracks_from_masks`: no public track files exist for Avenue).
  Boxes are in the evaluation resolution; axis-aligned rescaling leaves box IoU unchanged up to
  rounding.

With clips (``data.clip_length`` T) a clip scores its last frame, so the first T - 1 frames of a
video have no map: they take the first scored frame's score and yield no region, but still count
as test frames (RBDC's false-positive rate is per frame of the whole test set).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np
from scipy import ndimage

from sspcab_jax import data, metrics

FRAME_SCORES = ("mean", "max")
# The metrics of a video run that ``best_metric`` may rank (``evaluate`` also reports the
# unsmoothed ``*_raw`` AUCs).
VIDEO_METRICS = ("micro_auc", "macro_auc", "rbdc", "tbdc")
EvalFn = Callable[[Any, np.ndarray], dict[str, Any]]


@dataclasses.dataclass
class VideoPredictions:
    """Per-video outputs of a model on a test set (lists aligned with ``names``).

    Attributes:
      names: video names.
      scores: ``[T_v]`` float64 raw frame scores.
      labels: ``[T_v]`` int64 frame labels.
      maps: ``[T_v, H, W]`` float16 smoothed error maps (zeros where a frame has no map).
      masks: ``[T_v, H, W]`` bool ground-truth pixel masks.
      scored: ``[T_v]`` bool, whether the model scored the frame itself.
    """

    names: list[str]
    scores: list[np.ndarray]
    labels: list[np.ndarray]
    maps: list[np.ndarray]
    masks: list[np.ndarray]
    scored: list[np.ndarray]


def predict_videos(
    config: ml_collections.ConfigDict, eval_fn: EvalFn, state: Any, source: Sequence
) -> VideoPredictions:
    """Runs the model over every test frame (or clip), in order.

    Args:
      config: experiment config (``data.*``, ``video_eval.frame_score`` / ``map_sigma``).
      eval_fn: ``(state, images) -> {'anomaly_map' [B, H, W], 'score' [B]}`` on the pipeline's
        images (``evaluation.make_eval_fn``).
      state: host or single-device state.
      source: a :class:`~sspcab_jax.data.ClipSource` over labelled test videos.

    Returns:
      :class:`VideoPredictions`; memory is ``2 * N * H * W`` bytes of maps for N test frames.
    """
    videos = getattr(source, "videos", None)
    if videos is None or any(v.labels is None for v in videos):
        raise ValueError("Video evaluation needs a ClipSource over test videos with frame labels.")
    size = config.data.image_size
    index = {v.name: i for i, v in enumerate(videos)}
    maps = [np.zeros((len(v), size, size), np.float16) for v in videos]
    masks = [np.zeros((len(v), size, size), bool) for v in videos]
    scores = [np.full(len(v), np.nan) for v in videos]
    map_sigma = config.video_eval.map_sigma
    for batch in data.eval_batches(source, batch_size=config.data.eval_batch_size, image_size=size):
        result = eval_fn(state, batch["image"])
        err = np.asarray(result["anomaly_map"], np.float32)
        if map_sigma > 0:  # per frame: no smoothing across the batch axis
            err = ndimage.gaussian_filter(err, sigma=(0, map_sigma, map_sigma), mode="nearest")
        frame_scores = (
            err.reshape(len(err), -1).max(axis=1)
            if config.video_eval.frame_score == "max"
            else np.asarray(result["score"], np.float64)
        )
        for name, t, m, e, s in zip(
            batch["video"], batch["frame_index"], batch["mask"], err, frame_scores, strict=True
        ):
            v = index[str(name)]
            maps[v][t], masks[v][t], scores[v][t] = e, m[..., 0] > 0.5, s
    scored = [np.isfinite(s) for s in scores]
    for v, video in enumerate(videos):
        if not scored[v].any():
            raise ValueError(f"Test video {video.name} is shorter than data.clip_length.")
        first = int(np.argmax(scored[v]))
        scores[v][:first] = scores[v][first]
        for t in range(first):  # frames before the first full clip: masks from the reader
            masks[v][t] = video.mask(t, (size, size))[..., 0] > 0
    return VideoPredictions(
        names=[v.name for v in videos],
        scores=scores,
        labels=[np.asarray(v.labels, np.int64) for v in videos],
        maps=maps,
        masks=masks,
        scored=scored,
    )


def region_threshold(pred: VideoPredictions, v_cfg: ml_collections.ConfigDict) -> float:
    """The pixel threshold of regions: the configured value, or the pooled test quantile."""
    if v_cfg.region_threshold > 0:
        return float(v_cfg.region_threshold)
    pixels = np.concatenate([m[s].reshape(-1) for m, s in zip(pred.maps, pred.scored, strict=True)])
    return float(np.quantile(pixels.astype(np.float32), v_cfg.region_quantile))


def region_metrics(pred: VideoPredictions, v_cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """RBDC and TBDC (Ramachandra and Jones, WACV 2020); NaN when the test set has no masks."""
    ground_truth = [metrics.tracks_from_masks(m) for m in pred.masks]
    if sum(g.frames.size for g in ground_truth) == 0:
        return {"rbdc": float("nan"), "tbdc": float("nan")}
    threshold = region_threshold(pred, v_cfg)
    regions = [
        metrics.regions_from_maps(m.astype(np.float32), threshold, min_area=v_cfg.min_region_area)
        for m in pred.maps
    ]
    num_frames = sum(len(s) for s in pred.scores)
    curves = metrics.rbdc_tbdc(regions, ground_truth, num_frames)
    return {"rbdc": curves.rbdc, "tbdc": curves.tbdc}


def frame_metrics(
    pred: VideoPredictions, v_cfg: ml_collections.ConfigDict
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Micro/macro AUC of the post-processed and of the raw frame scores.

    Returns:
      ``(metrics, processed_scores)`` where ``processed_scores`` are the per-video ``[T_v]``
      scores the AUCs were computed on.
    """
    processed = metrics.postprocess_scores(
        pred.scores, sigma=v_cfg.sigma or None, normalise=v_cfg.normalise
    )
    # "raw": the same conventions without temporal smoothing.
    raw = metrics.postprocess_scores(pred.scores, normalise=v_cfg.normalise)
    pad = v_cfg.pad_each_video
    result = {
        "micro_auc": metrics.micro_auc(processed, pred.labels),
        "macro_auc": _macro(processed, pred.labels, pad),
        "micro_auc_raw": metrics.micro_auc(raw, pred.labels),
        "macro_auc_raw": _macro(raw, pred.labels, pad),
    }
    return result, processed


def _macro(scores: list[np.ndarray], labels: list[np.ndarray], pad: bool) -> float:
    try:
        return metrics.macro_auc(scores, labels, pad_each_video=pad)
    except ValueError:  # every video single-class: undefined, reported as NaN
        return float("nan")


def save_frame_scores(
    path: str | pathlib.Path, pred: VideoPredictions, processed: Sequence[np.ndarray]
) -> None:
    """Writes ``frame_scores.npz``: per video ``raw_<i>``, ``scores_<i>``, ``labels_<i>``.

    ``videos`` holds the names; ``<i>`` is the video's position in it.
    """
    arrays: dict[str, np.ndarray] = {"videos": np.asarray(pred.names)}
    for i in range(len(pred.names)):
        arrays[f"raw_{i}"] = pred.scores[i]
        arrays[f"scores_{i}"] = np.asarray(processed[i])
        arrays[f"labels_{i}"] = pred.labels[i]
    np.savez(path, **arrays)


def load_frame_scores(path: str | pathlib.Path) -> dict[str, dict[str, np.ndarray]]:
    """Reads ``frame_scores.npz`` as ``{video: {'raw', 'scores', 'labels'}}`` (``[T]`` each)."""
    with np.load(path) as f:
        names = [str(n) for n in f["videos"]]
        return {
            name: {k: f[f"{k}_{i}"] for k in ("raw", "scores", "labels")}
            for i, name in enumerate(names)
        }


def evaluate_videos(
    config: ml_collections.ConfigDict,
    eval_fn: EvalFn,
    state: Any,
    source: Sequence,
    scores_path: str | pathlib.Path | None = None,
) -> dict[str, float]:
    """Video metrics of a state on the test source.

    Args:
      config: experiment config with ``video_eval``.
      eval_fn: the model's jitted eval function (see :func:`predict_videos`).
      state: host or single-device state.
      source: the test :class:`~sspcab_jax.data.ClipSource`.
      scores_path: where to save the per-frame scores (``frame_scores.npz``), or None.

    Returns:
      ``micro_auc``, ``macro_auc``, ``rbdc``, ``tbdc`` (in [0, 1]; NaN where undefined) and the
      unsmoothed ``micro_auc_raw`` / ``macro_auc_raw``.
    """
    pred = predict_videos(config, eval_fn, state, source)
    result, processed = frame_metrics(pred, config.video_eval)
    result.update(region_metrics(pred, config.video_eval))
    if scores_path is not None:
        save_frame_scores(scores_path, pred, processed)
    return {k: float(v) for k, v in result.items()}
