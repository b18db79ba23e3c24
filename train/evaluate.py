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
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from absl import flags
from flax import linen as nn

from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.state import TrainState
from sspcab_jax.training.tasks import Task, get_task
from train import cli

logger = logging.getLogger(__name__)


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.evaluate``."""
    del argv
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=flag_values)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to evaluate.", flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)


def test_split_metrics(
    task: Task, model: nn.Module, state: TrainState, workdir: str | os.PathLike[str]
) -> dict[str, float]:
    """Metrics of ``state`` on the test split of the run's dataset.

    Uses the training loop's own evaluation (image or video), so the numbers match the run's.
    Video runs also rewrite ``frame_scores.npz`` for ``train.plot_scores``.

    Args:
        task: The run's task (built from its config).
        model: The single-device module.
        state: The restored state.
        workdir: The run directory (the embedded datasets live under it by default).

    Returns:
        A flat dict of floats (NaN where a metric is undefined for the split).
    """
    _, test_source = build_sources(task.config, workdir)
    scores_path = pathlib.Path(workdir) / "frame_scores.npz"
    return evaluation.evaluate(task, model, state, test_source, scores_path)


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
    task = get_task(config)
    values = test_split_metrics(task, model, state, workdir)
    summary = {"step": step, "which": which, **task.summary(), **values}
    path = update_metrics_file(workdir, summary)
    print(f"{workdir}: {which} checkpoint, step {step}")
    print(evaluation.format_metrics(values, config.data.category))
    logger.info("wrote %s", path)
    return summary


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Command entry: ``main(["evaluate", "--workdir=<run>", "--which=best"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    cli.require_writable(args.workdir, "--workdir")  # metrics.json is updated there
    return evaluate_run(args.workdir, args.which)


if __name__ == "__main__":
    cli.run(main)
