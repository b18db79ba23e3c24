"""Recompute a run's thresholds: ``python -m train.calibrate --workdir=<run>``.

Flags:
  --workdir  the training run's directory (holds config.json and checkpoints/).
  --which    'best' (default) or 'latest' checkpoint.

Scores the run's validation share (``data.val_fraction`` of its normal training images, the
same images training held out), writes ``<run>/calibration.json`` (thresholds at
``calibration.false_alarm_rate``) and updates ``<run>/metrics.json`` with the test-set verdict
metrics at those thresholds; other keys of the file are kept. The test set is scored only after
the thresholds are fixed.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

from absl import flags

from sspcab_jax.detector import Calibration
from sspcab_jax.training.calibrate import calibrate_run, format_verdicts
from sspcab_jax.training.data_setup import build_split_sources
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.tasks import get_task
from train import cli


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.calibrate``."""
    del argv
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=flag_values)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to calibrate.", flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)


def main(argv: Sequence[str]) -> Calibration:
    """Command entry: ``main(["calibrate", "--workdir=<run>"])``; returns the calibration."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    workdir = pathlib.Path(args.workdir)
    config, model, state, step = load_run(workdir, args.which)
    _, val_source, test_source = build_split_sources(config, workdir)
    calibration, verdicts = calibrate_run(get_task(config), model, state, val_source, test_source)
    path = calibration.save(workdir)
    metrics_path = workdir / "metrics.json"
    written = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics_path.write_text(json.dumps({**written, **verdicts}, indent=2))
    print(f"calibration of {args.which} step {step} written to {path}")
    if calibration.available:
        print(format_verdicts(verdicts, calibration))
    else:
        print(f"calibration unavailable: {calibration.note}")
    return calibration


if __name__ == "__main__":
    cli.run(main)
