"""Evaluate a trained run on its test split: ``python -m train.evaluate --workdir=<run>``.

Flags:
  --workdir  the training run's directory (holds config.json and checkpoints/).
  --which    'best' (default: the step ranked best by config.best_metric, else the newest) or
             'latest' (the newest readable step).

Restores the checkpoint, runs the test split of the run's own dataset (same config, same data
root), prints the metrics table and updates ``<run>/metrics.json``: the keys written here
replace the ones of the same name, every other key already in the file is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags
from flax import linen as nn

from sspcab_jax import metrics
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.loop import evaluate_state, run_summary
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.state import TrainState
from train import cli

logger = logging.getLogger(__name__)

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=FLAGS)
flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to evaluate.", flag_values=FLAGS)
flags.mark_flag_as_required("workdir", flag_values=FLAGS)


def test_split_metrics(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    state: TrainState,
    workdir: str | os.PathLike[str],
) -> dict[str, float]:
    """Metrics of ``state`` on the test split of the run's dataset.

    Uses the training loop's own evaluation (image or video), so the numbers match the run's.
    Video runs also rewrite ``frame_scores.npz`` for ``train.plot_scores``.

    Args:
        config: The run's config.
        model: The single-device module.
        state: The restored state.
        workdir: The run directory (the embedded datasets live under it by default).

    Returns:
        A flat dict of floats (NaN where a metric is undefined for the split).
    """
    _, test_source = build_sources(config, workdir)
    return evaluate_state(
        config, model, state, test_source, pathlib.Path(workdir) / "frame_scores.npz"
    )


def update_metrics_file(workdir: str | os.PathLike[str], values: dict[str, Any]) -> pathlib.Path:
    """Writes ``values`` into ``<workdir>/metrics.json``, keeping the other keys it holds.

    NaN is written as ``NaN``, as the training loop writes it.

    Returns:
        The path written.
    """
    path = pathlib.Path(workdir) / "metrics.json"
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            # An unreadable file holds nothing worth keeping; it is replaced whole.
            logger.warning("%s is not valid JSON; replacing it", path)
    path.write_text(json.dumps({**existing, **values}, indent=2))
    return path


def format_metrics(config: ml_collections.ConfigDict, values: dict[str, float]) -> str:
    """Markdown table of the metrics: the paper's columns for image runs, else two columns."""
    if set(values) == set(metrics.CategoryMetrics._fields):
        row = metrics.CategoryMetrics(**values)
        return metrics.format_markdown_table({config.data.category: row})
    lines = ["| metric | value |", "|---|---:|"]
    for name, value in values.items():
        lines.append(f"| {name} | {'—' if not math.isfinite(value) else f'{100 * value:.1f}'} |")
    return "\n".join(lines)


def evaluate_run(workdir: str | os.PathLike[str], which: str = "best") -> dict[str, Any]:
    """Restores a run, evaluates it on its test split and updates its ``metrics.json``.

    Args:
        workdir: The run directory.
        which: ``'best'`` or ``'latest'`` (see :func:`~sspcab_jax.training.restore.load_run`).

    Returns:
        What was written: ``step``, ``which``, ``model``, the SSPCAB placement and the metrics.

    Raises:
        RunError: Not a run, no checkpoint, or a config that does not match the checkpoint.
    """
    config, model, state, step = load_run(workdir, which)  # type: ignore[arg-type]
    values = test_split_metrics(config, model, state, workdir)
    summary = {"step": step, "which": which, **run_summary(config), **values}
    path = update_metrics_file(workdir, summary)
    print(f"{workdir}: {which} checkpoint, step {step}")
    print(format_metrics(config, values))
    logger.info("wrote %s", path)
    return summary


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Command entry: ``main(["evaluate", "--workdir=<run>", "--which=best"])``."""
    cli.parse_flags(FLAGS, argv, __doc__ or "")
    return evaluate_run(FLAGS.workdir, FLAGS.which)


if __name__ == "__main__":
    cli.run(main)
