"""Recompute a run's thresholds: ``python -m train.calibrate --workdir=<run>``.

Flags:
  --workdir      the training run's directory (holds config.json and checkpoints/).
  --which        'best' (default) or 'latest' checkpoint.
  --tile_size    calibrate a tiled detector (``Detector(tile_size=...)``; tiled scores are on
                 another scale than resized ones); unset: each image resized, as in training.
  --tile_overlap the tiles' overlap in pixels (with --tile_size).

Scores the run's validation images (the labelled folder ``data.val_dir`` when set, else the
``data.val_fraction`` share of its normal training images, the same images training held out),
writes ``<run>/calibration.json`` and a copy into the checkpoint step it calibrated, prints the
synthetic-recall estimate and, when the model looks weak, says so. ``<run>/metrics.json`` gets
the test-set verdict metrics at those thresholds (untiled), or under ``tiled_verdicts`` (tiled);
other keys of the file are kept. The test set is scored only after the thresholds are fixed.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

from absl import flags

from sspcab_jax.detector import Calibration
from sspcab_jax.training.calibrate import calibrate, calibration_summary, test_verdicts
from sspcab_jax.training.checkpoint import write_step_calibration
from sspcab_jax.training.data_setup import build_labelled_validation, build_split_sources
from sspcab_jax.training.fusion import fit_run_fusion
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.tasks import get_task
from train import cli


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.calibrate``."""
    del argv
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=flag_values)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to calibrate.", flag_values=flag_values)
    flags.DEFINE_integer(
        "tile_size", None, "Tile side in image pixels (unset: resize).", flag_values=flag_values
    )
    flags.DEFINE_integer("tile_overlap", 0, "Tile overlap in pixels.", flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)


def main(argv: Sequence[str]) -> Calibration:
    """Command entry: ``main(["calibrate", "--workdir=<run>"])``; returns the calibration."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    workdir = pathlib.Path(args.workdir)
    config, model, state, step = load_run(workdir, args.which)
    task = get_task(config)
    train_source, val_source, test_source = build_split_sources(config, workdir)
    # Refitted, not read: this is also how a missing or damaged local_statistics.npz is fixed.
    fit_run_fusion(task, model, state, train_source, val_source, workdir, step)
    tiling = (args.tile_size, args.tile_overlap)
    # Textures are only needed for the synthetic-recall estimate (untiled DRAEM runs).
    wants_sources = task.synthesizes_anomalies and args.tile_size is None
    calibration = calibrate(
        *(task, model, state, val_source, build_labelled_validation(config)),
        sources=task.anomaly_sources() if wants_sources else None,
        tiling=tiling,
        step=step,
    )
    path = calibration.save(workdir)
    write_step_calibration(workdir / "checkpoints", step, calibration.to_json())
    print(f"calibration of {args.which} step {step} written to {path}")
    try:
        verdicts = test_verdicts(task, model, state, test_source, calibration)
    except ValueError as error:  # e.g. tiled test images of several sizes
        print(f"test verdicts skipped: {error}")
        verdicts = {}
    metrics_path = workdir / "metrics.json"
    written = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if args.tile_size is None:
        written.update(verdicts)
    else:
        written["tiled_verdicts"] = {"tile_size": args.tile_size, **verdicts}
        written["tiled_verdicts"]["tile_overlap"] = args.tile_overlap
    metrics_path.write_text(json.dumps(written, indent=2))
    print(calibration_summary(calibration, verdicts, task))
    return calibration


if __name__ == "__main__":
    cli.run(main)
