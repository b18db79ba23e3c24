"""Calibration of a run end to end: labelled validation folder, synthetic-recall estimate,
tiled calibration, the copy in the checkpoint and the weak-model warning.

One tiny DRAEM run (4 steps: an untrained model) on a folder dataset, with ``data.val_dir``
set to a second synthetic dataset's labelled test folder.
"""

import contextlib
import io
import json
import logging
import shutil

import numpy as np
import pytest

from configs import test as test_config
from sspcab_jax import Calibration, Detector
from sspcab_jax.data import write_synthetic_mvtec
from sspcab_jax.training import calibrate as calibration_lib
from sspcab_jax.training import evaluation, loop
from sspcab_jax.training.config_checks import ConfigError
from sspcab_jax.training.data_setup import build_labelled_validation, build_split_sources
from sspcab_jax.training.restore import load_run
from sspcab_jax.training.synthetic_recall import score_synthetic
from sspcab_jax.training.tasks import get_task, validate_config
from train import calibrate as calibrate_command

CATEGORY = "brick"


def _config(root, val_root):
    config = test_config.get_config()
    config.data.dataset = "folder"
    config.data.train_dir = str(root / CATEGORY / "train")
    config.data.test_dir = str(root / CATEGORY / "test")
    config.data.mask_dir = str(root / CATEGORY / "ground_truth")
    config.data.val_fraction = 0.25
    config.data.val_dir = str(val_root / CATEGORY / "test")  # masks in ../ground_truth
    config.calibration.false_alarm_rate = 0.2
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``(workdir, data root, printed summary)`` of one 4-step run with a labelled val folder."""
    root, val_root = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("val")
    write_synthetic_mvtec(root, categories=[CATEGORY], num_train=16, seed=0)
    write_synthetic_mvtec(val_root, categories=[CATEGORY], num_train=2, seed=5)
    workdir = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        loop.train_and_evaluate(_config(root, val_root), workdir)
    return workdir, root, printed.getvalue()


def _brute_force_f1_threshold(values, truth):
    """Highest threshold t maximising F1 of ``values > t``, over every distinct cut."""
    values, truth = np.ravel(values).astype(np.float64), np.ravel(truth).astype(bool)
    candidates = np.r_[np.unique(values), np.nextafter(values.min(), -np.inf)]
    best_t, best_f1 = None, -1.0
    for t in sorted(candidates, reverse=True):
        flagged = values > t
        tp = np.sum(flagged & truth)
        f1 = 2 * tp / (flagged.sum() + truth.sum())
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = t, f1
    return best_t


def _val_predictions(workdir):
    config, model, state, _ = load_run(workdir, "latest")
    task = get_task(config)
    return evaluation.predict(task, model, state, build_labelled_validation(config))


def test_labelled_folder_gives_f1_optimal_thresholds(run):
    workdir, _, _ = run
    cal = Calibration.load(workdir)
    out = _val_predictions(workdir)
    labels, masks = out["label"] > 0, out["mask"] >= 0.5
    assert 0 < labels.sum() < labels.size and masks.any()

    assert (cal.source, cal.pixel_source) == ("f1", "f1")
    assert cal.num_images == labels.size and cal.num_anomalous_images == labels.sum()
    assert cal.image_threshold == _brute_force_f1_threshold(out["score"], labels)
    assert cal.pixel_threshold == _brute_force_f1_threshold(out["anomaly_map"], masks)


def test_labelled_folder_without_anomalies_falls_back_to_the_false_alarm_rule(run, tmp_path):
    workdir, _, _ = run
    config, model, state, _ = load_run(workdir, "latest")
    only_good = tmp_path / "val"
    shutil.copytree(f"{config.data.val_dir}/good", only_good / "good")
    config.data.val_dir = str(only_good)
    labelled = build_labelled_validation(config)
    task = get_task(config)

    cal = calibration_lib.calibrate(task, model, state, None, labelled)

    scores = np.sort(evaluation.predict(task, model, state, labelled)["score"])
    assert (cal.source, cal.pixel_source) == ("false_alarm_rate_fallback",) * 2
    # Smallest t with at most floor(0.2 * n) scores above it: the (n - 1 - floor(0.2 n))-th.
    n = scores.size
    assert cal.image_threshold == scores[n - 1 - int(0.2 * n)]
    assert np.mean(scores > cal.image_threshold) <= 0.2
    # Without the held-out share, the folder's good images carry the estimate.
    assert cal.synthetic_recall_estimate["num_images"] <= n


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_val_dir_that_holds_nothing_is_a_config_error(tmp_path, make):
    config = test_config.get_config()
    folder = tmp_path / "val"
    if make == "empty":
        (folder / "good").mkdir(parents=True)
    config.data.val_dir = str(folder)
    with pytest.raises(ConfigError, match=r"data\.val_dir.*good/ and defect sub-folders") as e:
        validate_config(config)
    assert "\n" not in str(e.value)


def test_synthetic_recall_estimate_is_stored_and_reproducible(run):
    workdir, _, printed = run
    saved = json.loads((workdir / "calibration.json").read_text())
    estimate = saved["synthetic_recall_estimate"]
    config, model, state, _ = load_run(workdir, "latest")
    task = get_task(config)
    _, val, _ = build_split_sources(config, workdir)

    scored = score_synthetic(task, model, state, val, task.anomaly_sources())

    # Every kept image has a non-empty synthetic mask; the recall is counted by hand here.
    assert scored["mask"].reshape(len(scored["mask"]), -1).any(axis=1).all()
    assert estimate["num_images"] == scored["score"].size > 0
    image_t, pixel_t = saved["image_threshold"], saved["pixel_threshold"]
    scores = scored["score"].astype(np.float64)  # compared in float64, as the detector does
    assert estimate["image_recall"] == np.mean(scores > image_t)
    in_mask = scored["anomaly_map"][scored["mask"] > 0.5].astype(np.float64)
    assert estimate["pixel_recall"] == pytest.approx(np.mean(in_mask > pixel_t))
    clean = scored["clean_score"].astype(np.float64)
    assert clean.size == len(val)
    assert estimate["image_false_alarm_rate"] == np.mean(clean > image_t)
    clean_map = scored["clean_map"].astype(np.float64)
    assert estimate["pixel_false_alarm_rate"] == pytest.approx(np.mean(clean_map > pixel_t))
    assert "an estimate on" in printed and "not a test on real defects" in printed


def test_untrained_model_gets_the_weak_model_warning(run):
    workdir, _, printed = run
    estimate = Calibration.load(workdir).synthetic_recall_estimate
    recall_low = estimate["image_recall"] < 0.5 or estimate["pixel_recall"] < 0.3
    alarms_high = max(estimate["image_false_alarm_rate"], estimate["pixel_false_alarm_rate"]) > 0.25
    assert recall_low or alarms_high
    assert "WARNING: this model looks weak" in printed
    assert "configs/draem_folder.py" in printed


def test_calibration_json_ignores_the_test_split(run, recalibrated_on_other_test_split):
    workdir, _, _ = run
    copy = recalibrated_on_other_test_split(workdir, CATEGORY, seed=9)
    assert (copy / "calibration.json").read_bytes() == (workdir / "calibration.json").read_bytes()


def test_tiled_calibration_and_the_scale_warning(run, tmp_path, caplog):
    workdir, _, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    # Calibrated resized; a tiled detector is warned, naming the command that fixes it.
    with caplog.at_level(logging.WARNING):
        Detector.from_workdir(copy, tile_size=48, tile_overlap=8)
    assert "train.calibrate" in caplog.text and "--tile_size=48 --tile_overlap=8" in caplog.text

    args = ["calibrate", f"--workdir={copy}", "--which=latest", "--tile_size=48"]
    cal = calibrate_command.main(args + ["--tile_overlap=8"])

    assert cal.tile_size == [48, 48] and cal.tile_overlap == 8
    assert cal.synthetic_recall_estimate is None  # synthetic anomalies are made untiled
    assert Calibration.load(copy / "checkpoints" / "4" / "calibration.json") == cal
    detector = Detector.from_workdir(copy, which="latest", tile_size=48, tile_overlap=8)
    assert detector.calibration == cal
    # The thresholds are F1-optimal on the tiled scores of the labelled folder.
    source = build_labelled_validation(detector.config)
    examples = [source[i] for i in range(len(source))]
    tiled = detector([e["image"] for e in examples])
    labels = np.array([e["label"] for e in examples]) > 0
    masks = np.stack([e["mask"][..., 0] > 0 for e in examples])
    assert cal.image_threshold == _brute_force_f1_threshold(tiled.score, labels)
    assert cal.pixel_threshold == _brute_force_f1_threshold(np.stack(tiled.anomaly_map), masks)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Detector.from_workdir(copy, which="latest")  # resized, calibrated tiled
    assert "another scale" in caplog.text
