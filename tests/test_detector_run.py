"""A trained run as a detector: from_workdir, calibration at the end of training, train.calibrate.

One tiny DRAEM run on a folder dataset (written here with the synthetic MVTec writer), so that
the test set can be swapped for another one without touching the training images.
"""

import json
import shutil

import numpy as np
import pytest
from sklearn import metrics as skm

from configs import test as test_config
from sspcab_jax import Calibration, Detector
from sspcab_jax.data import write_synthetic_mvtec
from sspcab_jax.training import evaluation, loop
from sspcab_jax.training.calibrate import binary_scores, calibrate
from sspcab_jax.training.data_setup import build_split_sources, validation_split
from sspcab_jax.training.restore import load_run
from sspcab_jax.training.tasks import get_task

CATEGORY = "brick"


def _folder_config(root, test_root=None):
    """configs/test.py on a folder dataset: train images of ``root``, test of ``test_root``."""
    config = test_config.get_config()
    test_root = test_root or root
    config.data.dataset = "folder"
    config.data.train_dir = str(root / CATEGORY / "train")
    config.data.test_dir = str(test_root / CATEGORY / "test")
    config.data.mask_dir = str(test_root / CATEGORY / "ground_truth")
    config.data.val_fraction = 0.25
    config.calibration.false_alarm_rate = 0.2
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``(workdir, dataset root, final metrics)`` of one trained run."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_mvtec(root, categories=[CATEGORY], num_train=16, seed=0)
    workdir = tmp_path_factory.mktemp("run")
    final = loop.train_and_evaluate(_folder_config(root), workdir)
    return workdir, root, final


def _test_predictions(workdir):
    """The run's own test predictions, through the evaluation module."""
    config, model, state, _ = load_run(workdir, "latest")
    _, _, test = build_split_sources(config, workdir)
    return evaluation.predict(get_task(config), model, state, test)


def test_from_workdir_equals_the_evaluation_path(run):
    workdir, _, _ = run
    config, model, state, _ = load_run(workdir, "best")
    task = get_task(config)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)  # the model's input size
    expected = evaluation.predict(task, model, state, [{"image": im} for im in images])

    detector = Detector.from_workdir(workdir, which="best")
    result = detector(images)

    np.testing.assert_allclose(result.anomaly_map, expected["anomaly_map"], atol=1e-6)
    np.testing.assert_allclose(result.score, expected["score"], atol=1e-6)
    assert detector.image_size == (32, 32) and detector.channels == 3
    # Other sizes are resized like the evaluation pipeline does: the same scores.
    _, _, test = build_split_sources(config, workdir)
    native = [test[i]["image"] for i in range(4)]
    assert native[0].shape[:2] == (64, 64)
    reference = evaluation.predict(task, model, state, [{"image": im} for im in native])
    np.testing.assert_allclose(detector(np.stack(native)).score, reference["score"], atol=1e-6)


def test_from_workdir_gives_calibrated_verdicts(run):
    workdir, _, _ = run
    detector = Detector.from_workdir(workdir, which="latest")
    saved = json.loads((workdir / "calibration.json").read_text())
    assert detector.calibration.image_threshold == saved["image_threshold"]
    images = np.random.default_rng(4).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)

    result = detector(images)

    np.testing.assert_array_equal(result.is_anomalous, result.score > saved["image_threshold"])
    np.testing.assert_array_equal(result.defect_mask, result.anomaly_map > saved["pixel_threshold"])
    assert result.anomaly_map.shape == (3, 40, 56)


def test_from_workdir_reads_the_checkpoint_copy_of_the_calibration(run, tmp_path):
    workdir, _, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
    shutil.copy(workdir / "config.json", copy / "config.json")
    step_copy = copy / "checkpoints" / "4" / "calibration.json"
    assert step_copy.read_text() == (workdir / "calibration.json").read_text()

    detector = Detector.from_workdir(copy, which="latest")  # no calibration.json in the copy

    assert detector.calibration == Calibration.load(workdir)
    assert detector.calibration.checkpoint_step == detector.step == 4


def test_from_workdir_without_calibration_is_uncalibrated(run, tmp_path):
    workdir, _, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
    shutil.copy(workdir / "config.json", copy / "config.json")
    (copy / "checkpoints" / "4" / "calibration.json").unlink()

    detector = Detector.from_workdir(copy)
    result = detector(np.zeros((32, 32, 3), np.uint8))

    assert not detector.calibration.available
    assert detector.calibration.image_threshold is None
    assert "train.calibrate" in detector.calibration.note
    assert result.is_anomalous is None and result.normalized_score is None


def test_one_tile_through_from_workdir_equals_untiled(run):
    workdir, _, _ = run
    image = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    plain = Detector.from_workdir(workdir)(image)
    tiled = Detector.from_workdir(workdir, tile_size=32, tile_overlap=8)(image)
    np.testing.assert_allclose(tiled.anomaly_map, plain.anomaly_map, atol=1e-6)
    np.testing.assert_allclose(tiled.score, plain.score, atol=1e-6)


def test_held_out_images_are_not_trained_on(run):
    workdir, root, _ = run
    config = _folder_config(root)
    train, val, _ = build_split_sources(config, workdir)
    names = lambda source: {source[i]["file_name"] for i in range(len(source))}  # noqa: E731
    assert len(val) == 4 and len(train) == 12  # 25 % of 16
    assert not names(train) & names(val)
    every = sorted((root / CATEGORY / "train").rglob("*.png"))
    assert len(names(train) | names(val)) == len(every)
    # Deterministic from the seed; another seed holds out other images.
    again_train, again_val, _ = build_split_sources(config, workdir)
    assert names(again_val) == names(val)
    config.seed = 1
    assert names(build_split_sources(config, workdir)[1]) != names(val)


def test_validation_split_counts():
    train, val = validation_split(10, 0.1, seed=0)
    assert len(val) == 1 and len(train) == 9 and not set(train) & set(val)
    assert len(validation_split(10, 0.0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match="val_fraction.*lower it"):
        validation_split(4, 0.9, seed=0)


def test_normal_only_validation_still_gets_thresholds(run):
    workdir, _, _ = run
    calibration = Calibration.load(workdir)
    # The validation share holds only normal training images, the usual case.
    assert calibration.available and calibration.source == "false_alarm_rate"
    assert calibration.num_images == 4 and calibration.num_anomalous_images == 0
    assert calibration.false_alarm_rate == 0.2
    assert calibration.num_pixels == 4 * 32 * 32


def test_no_test_image_influences_calibration(run, recalibrated_on_other_test_split):
    workdir, _, _ = run
    copy = recalibrated_on_other_test_split(workdir, CATEGORY, seed=7)
    assert (copy / "calibration.json").read_text() == (workdir / "calibration.json").read_text()
    # The test set did change: the verdict metrics on it differ.
    ours = json.loads((workdir / "metrics.json").read_text())
    theirs = json.loads((copy / "metrics.json").read_text())
    assert ours["image_f1"] != theirs["image_f1"] or ours["pixel_f1"] != theirs["pixel_f1"]


def test_verdict_metrics_equal_sklearn(run):
    workdir, _, final = run
    outputs = _test_predictions(workdir)
    cal = json.loads((workdir / "calibration.json").read_text())
    labels, flagged = outputs["label"] > 0, outputs["score"] > cal["image_threshold"]
    truth = (outputs["mask"] >= 0.5).reshape(-1)
    defects = (outputs["anomaly_map"] > cal["pixel_threshold"]).reshape(-1)
    tn, fp, _, _ = skm.confusion_matrix(labels, flagged, labels=[False, True]).ravel()
    expected = {
        "image_precision": skm.precision_score(labels, flagged, zero_division=np.nan),
        "image_recall": skm.recall_score(labels, flagged),
        "image_f1": skm.f1_score(labels, flagged),
        "image_false_alarm_rate": fp / (fp + tn),
        "pixel_f1": skm.f1_score(truth, defects),
    }
    written = json.loads((workdir / "metrics.json").read_text())
    for name, value in expected.items():
        if np.isnan(value):
            assert np.isnan(written[name]) and np.isnan(final[name]), name
        else:
            assert written[name] == pytest.approx(value, abs=1e-12), name
            assert final[name] == pytest.approx(value, abs=1e-12), name
    assert 0 < labels.sum() < labels.size and truth.any()


def test_binary_scores_match_sklearn_on_random_verdicts():
    rng = np.random.default_rng(0)
    truth, predicted = rng.random(200) < 0.3, rng.random(200) < 0.4
    got = binary_scores(predicted, truth)
    assert got["precision"] == pytest.approx(skm.precision_score(truth, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(truth, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(truth, predicted))
    assert got["false_alarm_rate"] == pytest.approx(np.mean(predicted[~truth]))
    assert np.isnan(binary_scores([False, False], [False, False])["precision"])


def test_no_validation_share_means_unavailable_and_says_so(run, caplog):
    workdir, _, _ = run
    config, model, state, _ = load_run(workdir, "latest")
    config.data.val_fraction = 0.0
    train, val, _ = build_split_sources(config, workdir)
    assert len(val) == 0 and len(train) == 16

    calibration = calibrate(get_task(config), model, state, val)

    assert not calibration.available and "val_fraction = 0" in calibration.note
    assert "calibration unavailable" in caplog.text
