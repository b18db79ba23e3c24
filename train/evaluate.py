"""Evaluate a trained run on its test split: ``python -m train.evaluate --workdir=<run>``.

Flags:
  --workdir  the training run's directory (holds config.json and checkpoints/).
  --which    'best' (default: the step ranked best by config.best_metric, else the newest) or
             'latest' (the newest readable step).

PyTorch DRAEM weights (the official per-category checkpoints, or anomalib's file) are evaluated
with the same metrics: ``--torch_reconstructive=<cat>.pckl --torch_discriminative=<cat>_seg.pckl
--config=configs/draem_mvtec.py:<cat> --workdir=<out>`` (needs ``pip install -e ".[torch]"``).
The widths, placement and discriminator input order come from the weights; the official
checkpoints were trained on BGR images, so the model is fed BGR (``data.channel_order``).

Restores the checkpoint, runs the test split of the run's own dataset (same config, same data
root), prints the metrics table and updates ``<run>/metrics.json``: the keys written here
replace the ones of the same name, every other key already in the file is kept. It also
(re)writes ``<run>/figures/`` (worst cases, score histogram, ROC / PRO curves) at the run's
calibrated thresholds, and prints the folder.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
import optax
from absl import flags
from flax import linen as nn
from ml_collections import config_flags

from sspcab_jax.detector import Calibration
from sspcab_jax.detector.from_run import load_calibration
from sspcab_jax.training import evaluation, run_figures
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.fusion import attach_saved_fusion
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.state import TrainState
from sspcab_jax.training.tasks import Task, get_task
from train import cli

logger = logging.getLogger(__name__)


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.evaluate``."""
    fv = flag_values
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to evaluate.", flag_values=fv)
    flags.DEFINE_string("torch_reconstructive", "", "PyTorch DRAEM weights file.", flag_values=fv)
    flags.DEFINE_string("torch_discriminative", "", "Its segmentation net file.", flag_values=fv)
    config_flags.DEFINE_config_file(
        "config", None, "Dataset config for --torch_*.", flag_values=fv, sys_argv=list(argv)
    )
    flags.mark_flag_as_required("workdir", flag_values=fv)


def test_split_metrics(
    task: Task,
    model: nn.Module,
    state: TrainState,
    workdir: str | os.PathLike[str],
    calibration: Calibration,
) -> tuple[dict[str, float], pathlib.Path | None]:
    """Metrics of ``state`` on the test split of the run's dataset; writes ``figures/``.

    Uses the training loop's own evaluation (image or video), so the numbers match the run's.
    Video runs also rewrite ``frame_scores.npz`` for ``train.plot_scores``. The figures are
    drawn from the same test outputs.

    Args:
        task: The run's task (built from its config).
        model: The single-device module.
        state: The restored state.
        workdir: The run directory (the embedded datasets live under it by default).
        calibration: The thresholds drawn in the figures (may be unavailable).

    Returns:
        ``(metrics, figures folder)``: a flat dict of floats (NaN where a metric is undefined
        for the split), and the folder (None when nothing could be drawn).
    """
    _, test_source = build_sources(task.config, workdir)
    scores_path = pathlib.Path(workdir) / "frame_scores.npz"
    values, outputs = evaluation.evaluate_with_outputs(task, model, state, test_source, scores_path)
    folder = run_figures.write_figures(workdir, task.config, calibration, test_source, outputs)
    return values, folder


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
    task = attach_saved_fusion(get_task(config), workdir, step)
    values, figures = test_split_metrics(task, model, state, workdir, load_calibration(workdir))
    summary = {"step": step, "which": which, **task.summary(), **values}
    path = update_metrics_file(workdir, summary)
    print(f"{workdir}: {which} checkpoint, step {step}")
    print(evaluation.format_metrics(values, evaluation.results_label(config)))
    print_figures(figures)
    logger.info("wrote %s", path)
    return summary


def evaluate_torch_weights(
    config: ml_collections.ConfigDict,
    reconstructive: str,
    discriminative: str | None,
    workdir: str | os.PathLike[str],
) -> dict[str, Any]:
    """Evaluates PyTorch DRAEM weights on the test split of ``config``'s dataset.

    Args:
        config: an experiment config naming the dataset (e.g. ``configs/draem_mvtec.py:bottle``);
            its ``draem`` architecture fields are replaced by those read from the weights.
        reconstructive: the reconstructive net's file (or anomalib's combined file).
        discriminative: the discriminative net's file, or None for anomalib's.
        workdir: where ``metrics.json`` (and the embedded dataset, if any) are written.

    Returns:
        What was written to ``metrics.json``: the weights, the model summary and the metrics.
    """
    from sspcab_jax.convert import load_official_draem

    loaded = load_official_draem(reconstructive, discriminative or None)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model = "draem"
    for field, value in loaded.model_kwargs.items():
        if field in config.draem:
            config.draem[field] = value
    config.data.channel_order = loaded.input_channel_order
    task = get_task(config)
    model, variables = task.create_model(), loaded.variables
    state = TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=optax.identity(),
        batch_stats=variables.get("batch_stats", {}),
    )
    uncalibrated = Calibration.unavailable("PyTorch weights evaluated without calibration")
    values, figures = test_split_metrics(task, model, state, workdir, uncalibrated)
    weights = {"reconstructive": str(reconstructive), "discriminative": discriminative or None}
    summary = {"weights": weights, **task.summary(), **values}
    update_metrics_file(workdir, summary)
    print(f"{reconstructive}: {loaded.input_channel_order.upper()} input")
    print(evaluation.format_metrics(values, evaluation.results_label(config)))
    print_figures(figures)
    return summary


def print_figures(folder: pathlib.Path | None) -> None:
    """The summary's last line, ``figures: <folder>``, when figures were written."""
    if folder:
        print(f"figures: {folder}")


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Command entry: ``main(["evaluate", "--workdir=<run>", "--which=best"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    if args.torch_reconstructive:
        if args.config is None:
            raise cli.CommandError("--torch_reconstructive needs --config=<dataset config>.")
        cli.require_writable(args.workdir, "--workdir")
        return evaluate_torch_weights(
            args.config, args.torch_reconstructive, args.torch_discriminative, args.workdir
        )
    cli.require_writable(args.workdir, "--workdir")  # metrics.json is updated there
    return evaluate_run(args.workdir, args.which)


if __name__ == "__main__":
    cli.run(main)
