"""The end-of-run summary: synthetic-recall estimate line and the weak-model warning."""

import dataclasses

import pytest

from configs import autoencoder_demo
from configs import test as test_config
from sspcab_jax import Calibration
from sspcab_jax.training.calibrate import calibration_summary, weak_model_warning
from sspcab_jax.training.tasks import get_task

THRESHOLDS = Calibration(image_threshold=0.4, pixel_threshold=0.3, source="false_alarm_rate")
GOOD = {
    "image_recall": 0.9,
    "pixel_recall": 0.6,
    "num_images": 10,
    "image_false_alarm_rate": 0.0,
    "pixel_false_alarm_rate": 0.01,
}


def _with(**estimate):
    return dataclasses.replace(THRESHOLDS, synthetic_recall_estimate={**GOOD, **estimate})


@pytest.fixture(scope="module")
def draem():
    return get_task(test_config.get_config())


def test_good_model_gets_no_warning(draem):
    calibration = _with()
    assert weak_model_warning(calibration, draem) is None
    summary = calibration_summary(calibration, {"image_f1": 0.8}, draem)
    assert "WARNING" not in summary
    assert "image 90.0 %, pixel 60.0 %" in summary and "an estimate" in summary


@pytest.mark.parametrize(
    "estimate, says",
    [
        ({"image_recall": 0.49}, "finds only 49 % of synthetic anomalous images"),
        ({"pixel_recall": 0.29}, "and 29 % of their defect pixels"),
        ({"image_false_alarm_rate": 0.3}, "flags 30 % of normal validation images"),
        ({"pixel_false_alarm_rate": 0.26}, "and 26 % of their pixels"),
    ],
)
def test_poor_estimate_is_called_weak(draem, estimate, says):
    warning = weak_model_warning(_with(**estimate), draem)
    assert warning is not None and says in warning
    assert "configs/draem_folder.py" in warning and "total_steps" in warning
    assert len(warning.splitlines()) == 2


def test_limits_themselves_are_not_weak(draem):
    at_limits = _with(
        image_recall=0.5, pixel_recall=0.3, image_false_alarm_rate=0.25, pixel_false_alarm_rate=0.25
    )
    assert weak_model_warning(at_limits, draem) is None


def test_unavailable_calibration_is_said_plainly(draem):
    calibration = Calibration.unavailable("no validation images")
    warning = weak_model_warning(calibration, draem)
    assert "calibration unavailable (no validation images)" in warning
    assert "data.val_fraction" in warning
    summary = calibration_summary(calibration, {}, draem)
    assert "WARNING" in summary


def test_video_runs_have_no_estimate_and_no_warning():
    video = get_task(autoencoder_demo.get_config())
    calibration = Calibration.unavailable("video runs are scored per frame")
    assert weak_model_warning(calibration, video) is None
    assert calibration_summary(calibration, {}, video) == ""


def test_autoencoder_image_run_says_the_estimate_is_not_available():
    config = autoencoder_demo.get_config()
    config.data.dataset = "synthetic"
    task = get_task(config)
    summary = calibration_summary(THRESHOLDS, {}, task)
    assert "estimate: not available (autoencoder runs synthesise no anomalies)" in summary
    assert "WARNING" not in summary


@pytest.mark.parametrize(
    "variant, steps, widths, says, never",
    [
        ("demo", 600, (16, 8), "configs/draem_folder.py (more total_steps", None),
        ("folder cpu", 2000, (32, 16), "--config.total_steps=4000", "draem_folder.py (more"),
        ("folder cpu", 2000, (32, 16), "configs/draem_folder.py:gpu", None),
        ("paper", 10000, (128, 64), "--config.total_steps=20000", "draem_folder.py"),
    ],
)
def test_the_advice_goes_beyond_the_recipe_the_run_already_uses(
    variant, steps, widths, says, never
):
    config = test_config.get_config()
    config.total_steps = steps
    config.draem.recon_width, config.draem.disc_width = widths
    warning = weak_model_warning(_with(image_recall=0.1), get_task(config))
    assert says in warning, (variant, warning)
    assert never is None or never not in warning, (variant, warning)


def test_autoencoder_advice_is_more_steps_of_its_own_recipe():
    config = autoencoder_demo.get_config()
    config.data.dataset = "synthetic"
    config.total_steps = 300
    calibration = Calibration.unavailable("no validation images")
    task = get_task(config)
    assert task.stronger_recipe() == "train longer, e.g. --config.total_steps=600"
    assert "draem_folder" not in task.stronger_recipe()
    assert weak_model_warning(calibration, task) is not None  # image runs are still warned
