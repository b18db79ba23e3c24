"""Which calibration a run's detector uses: calibration.json, the checkpoint's copy, warnings."""

import dataclasses
import logging

from sspcab_jax import Calibration
from sspcab_jax.detector.from_run import load_calibration
from sspcab_jax.training.checkpoint import read_step_calibration, write_step_calibration

UNTILED = Calibration(0.4, 0.3, 0.0, 1.0, 0.0, 1.0, "false_alarm_rate", "false_alarm_rate")


def _run(tmp_path, in_workdir=None, in_step=None, step=4):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
    if in_workdir is not None:
        in_workdir.save(tmp_path)
    if in_step is not None:
        assert write_step_calibration(tmp_path / "checkpoints", step, in_step.to_json())
    return tmp_path


def test_step_copy_round_trips_and_a_missing_step_is_refused(tmp_path, caplog):
    run = _run(tmp_path)
    assert read_step_calibration(run / "checkpoints", 4) is None
    assert write_step_calibration(run / "checkpoints", 4, UNTILED.to_json())
    assert Calibration.from_json(read_step_calibration(run / "checkpoints", 4)) == UNTILED
    assert not write_step_calibration(run / "checkpoints", 9, UNTILED.to_json())
    assert "No checkpoint step" in caplog.text
    assert not list((run / "checkpoints" / "4").glob("*.tmp"))


def test_workdir_file_is_preferred_when_both_fit(tmp_path):
    other = dataclasses.replace(UNTILED, image_threshold=0.9, checkpoint_step=4)
    run = _run(tmp_path, in_workdir=other, in_step=dataclasses.replace(UNTILED, checkpoint_step=4))
    assert load_calibration(run, step=4) == other


def test_the_one_made_for_the_tiling_wins(tmp_path, caplog):
    tiled = dataclasses.replace(UNTILED, tile_size=[48, 48], tile_overlap=8, checkpoint_step=4)
    run = _run(tmp_path, in_workdir=tiled, in_step=dataclasses.replace(UNTILED, checkpoint_step=4))
    with caplog.at_level(logging.WARNING):
        assert load_calibration(run, step=4) == dataclasses.replace(UNTILED, checkpoint_step=4)
        assert load_calibration(run, step=4, tile_size=48, tile_overlap=8) == tiled
        assert load_calibration(run, step=4, tile_size=(48, 48), tile_overlap=8) == tiled
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        assert load_calibration(run, step=4, tile_size=64, tile_overlap=0) == tiled
    assert "another scale" in caplog.text and "--tile_size=64 --tile_overlap=0" in caplog.text


def test_calibration_of_other_weights_is_used_with_a_warning(tmp_path, caplog):
    run = _run(tmp_path, in_workdir=dataclasses.replace(UNTILED, checkpoint_step=2))
    with caplog.at_level(logging.WARNING):
        assert load_calibration(run, step=4).checkpoint_step == 2
    assert "made for step 2, not the restored step 4" in caplog.text


def test_neither_means_uncalibrated(tmp_path):
    calibration = load_calibration(_run(tmp_path), step=4)
    assert not calibration.available and "train.calibrate" in calibration.note
