"""The pictures of a finished run: worst-case order, histogram threshold, ROC / PRO curves."""

import logging

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_curve

from configs import autoencoder_demo
from configs import test as test_config
from sspcab_jax.detector import Calibration
from sspcab_jax.training import run_curves, run_figures, video_eval

# Thresholds chosen by hand: image score > 0.45 is flagged, map value > 0.6 is a defect pixel.
CALIBRATION = Calibration(0.45, 0.6, 0.0, 1.0, 0.0, 1.0, "false_alarm_rate", "false_alarm_rate")


def test_worst_misses_first_then_worst_false_alarms_in_hand_computed_order():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.5, 0.5])
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    # Anomalous: 0 (0.9), 1 (0.1), 3 (0.3), 6 (0.5) -> lowest first: 1, 3, 6, 0.
    # Normal: 2 (0.5), 4 (0.8), 5 (0.2), 7 (0.5) -> highest first, ties in test order: 4, 2, 7, 5.
    cases = run_figures.worst_cases(scores, labels)
    assert cases.misses.tolist() == [1, 3, 6, 0]
    assert cases.false_alarms.tolist() == [4, 2, 7, 5]
    limited = run_figures.worst_cases(scores, labels, num_misses=2, num_false_alarms=3)
    assert limited.misses.tolist() == [1, 3] and limited.false_alarms.tolist() == [4, 2, 7]
    only_normal = run_figures.worst_cases(scores[[2, 4]], labels[[2, 4]])
    assert only_normal.misses.tolist() == [] and only_normal.false_alarms.tolist() == [1, 0]
    with pytest.raises(ValueError, match="must both be"):
        run_figures.worst_cases(scores, labels[:3])


def _outputs():
    """Four 4x4 test images: two anomalous (a defect square), two normal."""
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 4, 4), np.float32)
    masks[0, :2, :2] = masks[1, 2:, 2:] = 1.0
    maps = (0.5 * rng.random(masks.shape) + 0.4 * masks).astype(np.float32)
    scores = np.array([0.3, 0.9, 0.6, 0.2])  # anomalous 0 is missed, normal 2 a false alarm
    labels = np.array([1, 1, 0, 0])
    return {"score": scores, "anomaly_map": maps, "label": labels, "mask": masks}


def _panel(mosaic, row, column, size=4):
    step = size + run_figures.GAP
    return mosaic[row * step : row * step + size, column * step : column * step + size]


def test_worst_cases_rows_name_their_verdicts_and_the_thresholds():
    outputs, rows = _outputs(), [1, 0, 2, 3]
    images = np.random.default_rng(2).random((4, 4, 4, 3))
    mosaic, columns = run_figures.worst_cases_mosaic(images, outputs, rows, CALIBRATION)
    assert mosaic.shape == (4 * 6 - 2, 4 * 6 - 2, 3)
    assert columns == ["image", "anomaly map", "defect mask (map > 0.6)", "ground truth"]
    # Row 1 is test image 0: itself, then its map above the pixel threshold, its ground truth.
    np.testing.assert_allclose(_panel(mosaic, 1, 0), images[1], atol=1e-6)
    np.testing.assert_array_equal(_panel(mosaic, 1, 2)[..., 0], outputs["anomaly_map"][0] > 0.6)
    np.testing.assert_array_equal(_panel(mosaic, 1, 3)[..., 1], outputs["mask"][0])
    assert (mosaic[4:6] == 1).all()  # the white gap between rows 0 and 1

    fig = run_figures.worst_cases_figure(images, outputs, rows, CALIBRATION)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:4] == columns
    verdicts = [t.split("\n")[0] for t in texts[4:]]
    assert verdicts == [
        "anomalous, caught",
        "anomalous, MISSED",
        "normal, FALSE ALARM",
        "normal, ok",
    ]
    assert "image threshold 0.45" in fig.get_suptitle()

    uncalibrated = Calibration.unavailable("no validation images")
    mosaic, columns = run_figures.worst_cases_mosaic(images, outputs, rows, uncalibrated)
    assert columns == ["image", "anomaly map", "ground truth"]  # no pixel threshold, no mask
    without_truth = {k: v for k, v in outputs.items() if k != "mask"}
    _, columns = run_figures.worst_cases_mosaic(images, without_truth, rows, CALIBRATION)
    assert columns == ["image", "anomaly map", "defect mask (map > 0.6)"]
    fig = run_figures.worst_cases_figure(images, outputs, rows, uncalibrated)
    title = fig.get_suptitle().replace("\n", " ")
    assert "ordered by raw score: uncalibrated (no validation images)" in title
    assert fig.axes[0].texts[3].get_text() == "anomalous, score 0.9"


def _threshold_lines(ax):
    return [line for line in ax.lines if line.get_label().startswith("calibrated threshold")]


def test_histogram_counts_each_class_and_draws_the_threshold_where_it_is():
    scores = np.array([0.1, 0.2, 0.25, 0.4, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 0])
    fig = run_curves.score_histogram(scores, labels, threshold=0.42)
    ax = fig.axes[0]
    (line,) = _threshold_lines(ax)
    assert line.get_label() == "calibrated threshold 0.42"
    np.testing.assert_allclose(line.get_xdata(), [0.42, 0.42])
    # Bars: one container per class on shared bins; 4 normal and 2 anomalous images.
    normal, anomalous = ax.containers
    assert sum(p.get_height() for p in normal) == 4 and sum(p.get_height() for p in anomalous) == 2
    assert normal[-1].get_height() == 1  # 0.9, the highest score, is a normal image
    # A threshold beyond every score still shows.
    far = run_curves.score_histogram(scores, labels, threshold=5.0).axes[0]
    assert far.get_xlim()[1] >= 5.0
    assert _threshold_lines(run_curves.score_histogram(scores, labels).axes[0]) == []


def test_roc_panels_match_scikit_learn_and_mark_the_calibrated_point():
    outputs = _outputs()
    calibration = Calibration(0.25, 0.6, 0.0, 1.0, 0.0, 1.0, "false_alarm_rate", "f1")
    fig = run_curves.roc_pro_figure(outputs, calibration)
    image_ax, pixel_ax, pro_ax = fig.axes
    fpr, tpr, _ = roc_curve(outputs["label"], outputs["score"], drop_intermediate=False)
    np.testing.assert_allclose(image_ax.lines[0].get_xdata(), fpr)
    np.testing.assert_allclose(image_ax.lines[0].get_ydata(), tpr)
    # Image threshold 0.25: normals 0.6 flagged, 0.2 not (FPR 1/2); both anomalous caught (TPR 1).
    point = image_ax.lines[1]
    assert point.get_label() == "calibrated threshold"
    np.testing.assert_allclose([*point.get_xdata(), *point.get_ydata()], [0.5, 1.0])
    truth = outputs["mask"].ravel() >= 0.5
    values = outputs["anomaly_map"].ravel()
    fpr, tpr, _ = roc_curve(truth, values, drop_intermediate=False)
    np.testing.assert_allclose(pixel_ax.lines[0].get_xdata(), fpr)
    np.testing.assert_allclose(pixel_ax.lines[0].get_ydata(), tpr)
    pixel_point = [np.mean(values[~truth] > 0.6), np.mean(values[truth] > 0.6)]
    np.testing.assert_allclose(
        [*pixel_ax.lines[1].get_xdata(), *pixel_ax.lines[1].get_ydata()], pixel_point
    )
    assert pro_ax.get_xlim() == (0.0, 0.3)
    np.testing.assert_allclose(pro_ax.lines[1].get_xdata(), [pixel_point[0]] * 2)


def test_pro_curve_is_cut_at_the_limit_with_the_hand_computed_area():
    # One 1x5 image; defects at 0 and 3 (two regions), normals score 0.9, 0.2, 0.1.
    maps = np.array([[[0.5, 0.9, 0.2, 0.8, 0.1]]])
    masks = np.array([[[1, 0, 0, 1, 0]]])
    fpr, pro = run_curves.pro_curve_up_to(maps, masks, fpr_limit=0.5)
    # (0, 0), 0.9 -> (1/3, 0), 0.8 -> (1/3, 1/2), 0.5 -> (1/3, 1), cut on the way to (2/3, 1).
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1 / 3, 1 / 3, 0.5])
    np.testing.assert_allclose(pro, [0, 0, 0.5, 1, 1])
    assert np.trapezoid(pro, fpr) / 0.5 == pytest.approx(1 / 3)


def test_undefined_panels_say_why_instead_of_failing():
    outputs = _outputs()
    outputs["label"][:] = 0
    del outputs["mask"]
    image_ax, pixel_ax, _ = run_curves.roc_pro_figure(outputs, CALIBRATION).axes
    assert "undefined" in image_ax.texts[0].get_text() and not image_ax.lines
    assert pixel_ax.texts[0].get_text() == "no ground-truth masks"


def test_a_video_run_gets_its_frame_score_histogram(tmp_path, caplog):
    config = autoencoder_demo.get_config()
    with caplog.at_level(logging.INFO):
        assert run_figures.write_figures(tmp_path, config, Calibration.unavailable("video")) is None
    assert "figures: skipped" in caplog.text and not (tmp_path / "figures").exists()
    labels = [np.array([0, 0, 1, 1]), np.array([0, 1, 0])]
    scores = [np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.3, 0.7, 0.2])]
    pred = video_eval.VideoPredictions(["01", "02"], scores, labels, [], [], [])
    video_eval.save_frame_scores(tmp_path / "frame_scores.npz", pred, scores)
    folder = run_figures.write_figures(tmp_path, config, Calibration.unavailable("video"))
    assert folder == tmp_path / "figures"
    assert sorted(p.name for p in folder.iterdir()) == ["score_histogram.png"]


def test_an_image_run_without_outputs_is_skipped(tmp_path):
    config = test_config.get_config()
    assert run_figures.write_figures(tmp_path, config, CALIBRATION) is None


def test_image_figures_are_pngs_read_back_from_the_test_source(tmp_path):
    outputs = _outputs()
    rng = np.random.default_rng(1)
    source = [{"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)} for _ in range(4)]
    config = test_config.get_config()
    config.data.image_size = 4
    folder = run_figures.write_figures(tmp_path, config, CALIBRATION, source, outputs)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["roc_pro.png", "score_histogram.png", "worst_cases.png"]
    for name in names:
        with Image.open(folder / name) as image:
            assert image.format == "PNG"
