"""Thresholds, normalisation and calibration files, against hand-computed and sklearn values."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_curve

from sspcab_jax.detector import (
    Calibration,
    calibrate_from_labelled,
    calibrate_from_normals,
    synthetic_recall,
)
from sspcab_jax.detector.thresholds import best_f1_threshold, false_alarm_threshold, normalize


@pytest.mark.parametrize(
    "values, rate, expected",
    [
        # sorted: 1 1 2 3 4 5 6 9
        ([3, 1, 4, 1, 5, 9, 2, 6], 0.0, 9),  # nothing may exceed: the maximum
        ([3, 1, 4, 1, 5, 9, 2, 6], 0.2, 6),  # 1 of 8 may exceed (floor 1.6)
        ([3, 1, 4, 1, 5, 9, 2, 6], 0.25, 5),  # 2 of 8: 6 and 9 exceed 5
        ([3, 1, 4, 1, 5, 9, 2, 6], 0.5, 3),  # 4 of 8: 4 5 6 9
        ([1, 2, 2, 2, 3], 0.2, 2),  # ties: only 3 exceeds 2
        ([1, 2, 2, 2, 3], 0.4, 2),  # 2 may exceed, but any t < 2 leaves 4 above
        ([1, 2, 2, 2, 3], 0.8, 1),
        (list(range(100)), 0.29, 70),  # 0.29 * 100 = 28.999999999999996 in floats: 29 allowed
        ([7.0], 0.01, 7.0),
    ],
)
def test_false_alarm_threshold_hand_computed(values, rate, expected):
    assert false_alarm_threshold(np.asarray(values, np.float64), rate) == expected


def _brute_force_threshold(values, rate):
    candidates = np.unique(values)
    return min(t for t in candidates if np.mean(values > t) <= rate + 1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_false_alarm_threshold_is_smallest_valid(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=int(rng.integers(1, 300))), 1)  # many ties
    for rate in (0.0, 0.01, 0.05, 0.1, 0.37):
        t = false_alarm_threshold(values, rate)
        assert np.mean(values > t) <= rate
        assert t == _brute_force_threshold(values, rate)


def test_false_alarm_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        false_alarm_threshold([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="empty"):
        false_alarm_threshold([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        false_alarm_threshold([1.0, np.nan], 0.1)


@pytest.mark.parametrize("seed", range(6))
def test_best_f1_threshold_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[0] = True
    scores = np.round(rng.normal(size=n) + 1.5 * labels, 1)  # ties across classes
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.nanmax(2 * precision * recall / (precision + recall))
    t, f1 = best_f1_threshold(scores, labels)
    assert f1 == pytest.approx(best)
    assert f1_score(labels, scores > t) == pytest.approx(best)  # the verdict rule reaches it


def test_best_f1_threshold_hand_computed():
    # Flag {0.9, 0.8}: precision 1, recall 2/3, F1 0.8; flag also 0.7 (normal) and 0.6: 0.857.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    labels = np.array([1, 1, 0, 1, 0])
    t, f1 = best_f1_threshold(scores, labels)
    assert t == 0.1 and f1 == pytest.approx(6 / 7)
    # Everything anomalous: every value must be flagged, so t lies below the minimum.
    t, f1 = best_f1_threshold([0.2, 0.5], [1, 1])
    assert t < 0.2 and f1 == 1.0


def test_normalize_hand_computed():
    # t = 2, min 0, max 10: [0, 2] -> [0, 0.5], [2, 10] -> [0.5, 1].
    values = np.array([-5.0, 0.0, 1.0, 2.0, 6.0, 10.0, 20.0])
    expected = [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    np.testing.assert_allclose(normalize(values, 2.0, 0.0, 10.0), expected, atol=1e-7)
    # Max close to t: the upper anchor moves to t + (t - min) = 4, so 3 -> 0.75 and not 1.
    np.testing.assert_allclose(normalize([3.0, 4.0, 5.0], 2.0, 0.0, 3.0), [0.75, 1.0, 1.0])
    # All validation values equal: still defined, 0.5 at t, and verdict-consistent.
    out = normalize([0.3, 0.3 + 1e-3, 0.3 - 1e-3], 0.3, 0.3, 0.3)
    assert out[0] == 0.5 and out[1] > 0.5 and out[2] < 0.5


@pytest.mark.parametrize("seed", range(5))
def test_normalize_properties(seed):
    rng = np.random.default_rng(seed)
    validation = rng.gamma(2.0, size=50)
    t = false_alarm_threshold(validation, 0.1)
    values = np.sort(np.r_[rng.gamma(2.0, size=500) * 2, validation, t])
    # Values one float64 step around the threshold: float32 cannot resolve them.
    values = np.sort(np.r_[values, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)])
    out = normalize(values, t, validation.min(), validation.max())
    assert out.dtype == np.float32
    assert np.all(np.diff(out) >= 0)  # monotone
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out > 0.5, values > t)  # same verdict, ties included
    assert np.all(out[values == t] == 0.5)


def _calibration_from_arrays():
    scores = np.array([0.1, 0.4, 0.3, 0.2])
    maps = np.arange(4 * 2 * 5, dtype=np.float64).reshape(4, 2, 5) / 40  # 0 .. 0.975
    return scores, maps


def test_calibrate_from_normals_thresholds_and_stats():
    scores, maps = _calibration_from_arrays()
    cal = calibrate_from_normals(scores, maps, false_alarm_rate=0.25)
    assert cal.image_threshold == 0.3  # one of 4 may exceed: 0.4
    # 40 pixels, 10 may exceed: the 30th smallest value, 29 / 40.
    assert cal.pixel_threshold == 29 / 40
    assert (cal.image_min, cal.image_max) == (0.1, 0.4)
    assert (cal.pixel_min, cal.pixel_max) == (0.0, 39 / 40)
    assert (cal.source, cal.pixel_source, cal.false_alarm_rate) == (
        "false_alarm_rate",
        "false_alarm_rate",
        0.25,
    )
    assert (cal.num_images, cal.num_pixels, cal.num_anomalous_images) == (4, 40, 0)
    np.testing.assert_array_equal(cal.is_anomalous(scores), [False, True, False, False])
    assert cal.defect_mask(maps).sum() == 10
    np.testing.assert_array_equal(cal.normalize_scores(scores) > 0.5, cal.is_anomalous(scores))
    assert cal.normalize_scores([0.3])[0] == 0.5


def test_calibrate_from_labelled_f1_and_fallbacks():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.3, 0.9])
    masks = np.zeros((5, 4, 4), bool)
    masks[3:, 1:3, 1:3] = True
    maps = rng.uniform(0, 0.5, size=(5, 4, 4)) + 0.5 * masks
    cal = calibrate_from_labelled(scores, labels, maps, masks)
    assert (cal.source, cal.pixel_source) == ("f1", "f1")
    assert cal.image_threshold == 0.2  # flag {0.35, 0.3, 0.9}: F1 0.8 beats {0.9}: 0.667
    np.testing.assert_array_equal(cal.defect_mask(maps), masks)  # separable pixels
    assert (cal.num_anomalous_images, cal.num_anomalous_pixels) == (2, 8)
    assert cal.false_alarm_rate is None

    # No anomalous images: the false-alarm rule, and the source says so.
    normal = calibrate_from_labelled(scores, np.zeros(5), maps, np.zeros_like(masks), 0.2)
    assert (normal.source, normal.pixel_source) == ("false_alarm_rate_fallback",) * 2
    assert normal.image_threshold == false_alarm_threshold(scores, 0.2)
    assert normal.pixel_threshold == false_alarm_threshold(maps, 0.2)
    assert normal.false_alarm_rate == 0.2

    # Anomalous images without masks: image F1, pixel threshold from the normal images only.
    no_masks = calibrate_from_labelled(scores, labels, maps, np.zeros_like(masks), 0.2)
    assert (no_masks.source, no_masks.pixel_source) == ("f1", "false_alarm_rate_fallback")
    assert no_masks.pixel_threshold == false_alarm_threshold(maps[:3], 0.2)


def test_synthetic_recall_counts():
    scores, maps = _calibration_from_arrays()
    cal = calibrate_from_normals(scores, maps, false_alarm_rate=0.25)
    masks = np.zeros_like(maps, bool)
    masks[:, 1, :] = True  # 20 pixels; those above 29/40: values 30..39 in rows of image 3
    result = synthetic_recall(cal, [0.5, 0.3, 0.31, 0.0], maps, masks)
    assert result["image_recall"] == 0.5
    assert result["pixel_recall"] == pytest.approx(5 / 20)
    assert result["num_images"] == 4
    assert synthetic_recall(cal, scores, maps, np.zeros_like(masks))["pixel_recall"] is None


def test_json_round_trip_and_files(tmp_path):
    scores, maps = _calibration_from_arrays()
    cal = calibrate_from_normals(scores, maps, 0.25)
    cal = Calibration(
        **{
            **cal.__dict__,
            "synthetic_recall_estimate": synthetic_recall(cal, scores, maps, maps > 0.5),
        }
    )
    assert Calibration.from_json(cal.to_json()) == cal
    written = cal.save(tmp_path)
    assert written == tmp_path / "calibration.json"
    assert Calibration.load(tmp_path) == cal == Calibration.load(written)
    fields = json.loads(written.read_text())
    assert fields["version"] == 1 and fields["image_threshold"] == 0.3

    unavailable = Calibration.unavailable("no validation images (data.val_fraction = 0)")
    assert not unavailable.available
    assert Calibration.from_json(unavailable.to_json()) == unavailable
    with pytest.raises(ValueError, match="no thresholds"):
        unavailable.normalize_scores([0.1])

    with pytest.raises(ValueError, match="version"):
        Calibration.from_json(json.dumps({**fields, "version": 99}))
    with pytest.raises(ValueError, match="Unknown calibration fields"):
        Calibration.from_json(json.dumps({**fields, "colour": 1}))
    with pytest.raises(FileNotFoundError, match="calibration"):
        Calibration.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="source"):
        Calibration(0.1, 0.1, source="guess")
