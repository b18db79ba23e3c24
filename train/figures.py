"""Figure-1-style anomaly maps and ROC curves of one or more runs on their test splits.

    python -m train.figures --runs=<run_a>,<run_b> --names=DRAEM,DRAEM+SSPCAB --out=<dir>

Flags:
  --runs   comma-separated run directories (image runs; for video runs see train.plot_scores).
  --names  comma-separated display names, one per run (default: the directories' names).
  --out    output folder (created).
  --num    rows of the anomaly-map figure (default 6).
  --which  'best' (default) or 'latest' checkpoint of every run.

Runs are grouped by test split (``data.category``; the test folder's name for folder
datasets). Per split it writes:
  ``anomaly_maps_<split>.png``  one row per image: image | ground truth | each run's map. The
                                rows are the test images all runs find most anomalous (mean of
                                each run's score rank, so runs on different scales weigh
                                equally), among the defective ones when the split has any.
  ``roc_<split>.png``           image-level ROC (and pixel-level ROC when the split has
                                ground-truth masks), one curve per run.
Runs grouped together must share the same test images.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from absl import flags

from sspcab_jax import data, viz
from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import build_sources, is_video
from sspcab_jax.training.fusion import attach_saved_fusion
from sspcab_jax.training.restore import WHICH, RunError, load_run
from sspcab_jax.training.tasks import get_task
from train import cli
from train.predict import resize_map

logger = logging.getLogger(__name__)


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.figures``."""
    del argv
    fv = flag_values
    flags.DEFINE_list("runs", None, "Run directories, comma-separated.", flag_values=fv)
    flags.DEFINE_list("names", [], "Display names, one per run.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
    flags.DEFINE_integer("num", 6, "Rows of the anomaly-map figure.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint of every run.", flag_values=fv)
    flags.mark_flags_as_required(["runs", "out"], flag_values=fv)


class TestOutputs(NamedTuple):
    """One run's predictions on its test split.

    Attributes:
        split: The test split's name (category).
        files: ``[N]`` file names of the test images, in order.
        source: The test source (to read images back).
        image_size: The run's ``data.image_size``.
        outputs: ``evaluation.predict`` output: ``score [N]``, ``anomaly_map [N, S, S]``,
            ``label [N]``, ``mask [N, S, S]``.
    """

    split: str
    files: list[str]
    source: Any
    image_size: int
    outputs: dict[str, np.ndarray]


def split_name(config: Any) -> str:
    """``data.category``, or the test folder's name for folder datasets."""
    if config.data.dataset == "folder":
        return pathlib.Path(config.data.test_dir).name or "folder"
    return str(config.data.category)


def run_test_outputs(workdir: str | os.PathLike[str], which: str) -> TestOutputs:
    """Restores a run and predicts its whole test split.

    Raises:
        RunError: A video run, or a run that cannot be restored.
    """
    config, model, state, step = load_run(workdir, which)  # type: ignore[arg-type]
    if is_video(config):
        raise RunError(
            f"{workdir} is a video run (data.dataset={config.data.dataset!r}); plot its frame "
            "scores with `python -m train.plot_scores` instead."
        )
    _, source = build_sources(config, workdir)
    records = getattr(source, "records", None)
    files = [r.file_name for r in records] if records else [str(i) for i in range(len(source))]
    task = attach_saved_fusion(get_task(config), workdir, step)
    outputs = evaluation.predict(task, model, state, source)
    return TestOutputs(split_name(config), files, source, int(config.data.image_size), outputs)


def most_anomalous(runs: Sequence[TestOutputs], num: int) -> np.ndarray:
    """Indices of the ``num`` test images ranked most anomalous by all runs together."""
    labels = runs[0].outputs["label"]
    ranks = np.mean([np.argsort(np.argsort(r.outputs["score"])) for r in runs], axis=0)
    candidates = np.flatnonzero(labels == 1) if (labels == 1).any() else np.arange(labels.size)
    order = candidates[np.argsort(-ranks[candidates], kind="stable")]
    return order[:num]


def split_figures(
    split: str, runs: dict[str, TestOutputs], out: pathlib.Path, num: int
) -> list[pathlib.Path]:
    """Writes the anomaly-map figure and the ROC curves of one test split.

    Args:
        split: The split's name (used in the file names).
        runs: Display name -> that run's test outputs (same test images).
        out: Output folder.
        num: Rows of the anomaly-map figure.

    Returns:
        The paths written.

    Raises:
        RunError: The runs' test images differ, or the split lacks normal or defective images.
    """
    first_name, first = next(iter(runs.items()))
    for name, run in runs.items():
        if run.files != first.files:
            raise RunError(
                f"runs {first_name!r} and {name!r} are both on split {split!r} but have different "
                "test images; compare runs trained on the same data (or give them separately)."
            )
    labels = first.outputs["label"]
    if labels.min() == labels.max():
        raise RunError(
            f"the test split {split!r} has only {'defective' if labels[0] else 'normal'} images; "
            "ROC curves and Figure 1 need both (add good/ and defect folders to the test set)."
        )
    size = (first.image_size, first.image_size)
    # Runs trained at another size are shown at the first run's size.
    maps = {
        n: np.stack([resize_map(m, size) for m in r.outputs["anomaly_map"]])
        for n, r in runs.items()
    }
    masks = first.outputs["mask"]

    rows = most_anomalous(list(runs.values()), num)
    images = np.stack(
        [data.prepare_example(first.source[int(i)], image_size=size)["image"] for i in rows]
    )
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in split)
    maps_path = out / f"anomaly_maps_{safe}.png"
    viz.plot_anomaly_maps(images, masks[rows], {n: m[rows] for n, m in maps.items()}, maps_path)

    binary = (masks >= 0.5).astype(np.uint8)
    image_curves = {n: (r.outputs["score"], labels) for n, r in runs.items()}
    pixel_curves = {n: (m, binary) for n, m in maps.items()} if binary.any() else None
    roc_path = out / f"roc_{safe}.png"
    viz.plot_roc_curves(image_curves, roc_path, pixel=pixel_curves)
    return [maps_path, roc_path]


def make_figures(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    num: int = 6,
    which: str = "best",
) -> list[pathlib.Path]:
    """Figure-1-style anomaly maps and ROC curves of ``runs``, per test split.

    Args:
        runs: Run directories.
        out: Output folder (created).
        names: Display names, one per run (default: the directories' names).
        num: Rows of each anomaly-map figure.
        which: ``'best'`` or ``'latest'`` checkpoint of every run.

    Returns:
        The PNG paths written, two per split.

    Raises:
        cli.CommandError: No run, names that do not match the runs, or ``num < 1``.
        RunError: A run cannot be used (see :func:`run_test_outputs`, :func:`split_figures`).
    """
    if not runs:
        raise cli.CommandError("--runs is empty: pass one or more run directories.")
    names = list(names) if names else [pathlib.Path(r).resolve().name for r in runs]
    if len(names) != len(runs) or len(set(names)) != len(names):
        raise cli.CommandError(
            f"--names needs one distinct name per run: {len(runs)} run(s), names {names}."
        )
    if num < 1:
        raise cli.CommandError(f"--num must be at least 1, got {num}.")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)

    cache: dict[pathlib.Path, TestOutputs] = {}  # the same run listed twice is predicted once
    by_split: dict[str, dict[str, TestOutputs]] = {}
    for run, name in zip(runs, names, strict=True):
        key = pathlib.Path(run).resolve()
        if key not in cache:
            cache[key] = run_test_outputs(run, which)
        by_split.setdefault(cache[key].split, {})[name] = cache[key]
    written = []
    for split, split_runs in by_split.items():
        written += split_figures(split, split_runs, out, num)
    for path in written:
        print(f"wrote {path}")
    return written


def main(argv: Sequence[str]) -> list[pathlib.Path]:
    """Command entry: ``main(["figures", "--runs=<a>,<b>", "--names=A,B", "--out=<dir>"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    return make_figures(args.runs, args.out, names=args.names, num=args.num, which=args.which)


if __name__ == "__main__":
    cli.run(main)
