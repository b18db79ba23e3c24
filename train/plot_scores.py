"""Figure-2-style frame-score curves: several video runs overlaid on one test video.

    python -m train.plot_scores --runs=DIR/none,DIR/late --video=01 --out=fig.png

Reads each run's ``frame_scores.npz`` (written at the end of a video run), so nothing is
recomputed. The curves are the scores the run's metrics were computed on (after its smoothing
and normalisation; ``--raw`` plots the unsmoothed scores); the ground-truth abnormal frames are
shaded and each run's AUC on this video is in the legend.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from absl import flags

from sspcab_jax import metrics, viz
from sspcab_jax.training.video_eval import load_frame_scores
from train import cli


def plot_runs(
    runs: Sequence[str | pathlib.Path],
    video: str,
    out: str | pathlib.Path,
    *,
    names: Sequence[str] | None = None,
    raw: bool = False,
) -> str:
    """Overlays the frame scores of ``video`` from each run directory.

    Args:
      runs: run directories holding ``frame_scores.npz``.
      video: test-video name, e.g. ``'01'`` (Avenue) or ``'01_0054'`` (ShanghaiTech).
      out: output PNG path.
      names: legend names (default: each directory's name).
      raw: plot the unsmoothed scores instead of the evaluated ones.

    Returns:
      The path written.

    Raises:
      FileNotFoundError: a run has no ``frame_scores.npz`` (not a finished video run).
      KeyError: the video is not in a run's test set (the message lists the available ones).
    """
    names = list(names) if names else [pathlib.Path(r).name for r in runs]
    if len(names) != len(runs):
        raise ValueError(f"{len(names)} names for {len(runs)} runs.")
    curves, labels = {}, None
    for run, name in zip(runs, names, strict=True):
        path = pathlib.Path(run) / "frame_scores.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: finish a video run in {run} first.")
        videos = load_frame_scores(path)
        if video not in videos:
            raise KeyError(f"Video {video!r} is not in {path}; it has {sorted(videos)}.")
        entry = videos[video]
        scores = entry["raw" if raw else "scores"]
        labels = entry["labels"] if labels is None else labels
        both = 0 < labels.sum() < labels.size
        auc = f" (AUC {100 * metrics.auroc(scores, labels):.1f})" if both else ""
        curves[f"{name}{auc}"] = scores
    return viz.plot_frame_scores(curves, np.asarray(labels), out, title=f"test video {video}")


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.plot_scores``."""
    del argv
    fv = flag_values
    flags.DEFINE_list("runs", None, "Run directories (e.g. baseline,+SSPCAB).", flag_values=fv)
    flags.DEFINE_string("video", None, "Test-video name, e.g. 01.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output PNG path.", flag_values=fv)
    flags.DEFINE_list("names", [], "Legend names (default: folder names).", flag_values=fv)
    flags.DEFINE_bool("raw", False, "Plot the unsmoothed frame scores.", flag_values=fv)
    flags.mark_flags_as_required(["runs", "video", "out"], flag_values=fv)


def main(argv: Sequence[str]) -> str:
    """Command entry: ``main(["plot_scores", "--runs=A,B", "--video=01", "--out=fig.png"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    path = plot_runs(args.runs, args.video, args.out, names=args.names or None, raw=args.raw)
    print(path)
    return path


if __name__ == "__main__":
    cli.run(main)
