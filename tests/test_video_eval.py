"""Video evaluation: frame metrics, regions -> RBDC/TBDC, saved frame scores."""

import numpy as np
import pytest

from configs import autoencoder_demo
from sspcab_jax.training import video_eval


def _predictions(perfect=True):
    rng = np.random.default_rng(0)
    names, scores, labels, maps, masks = [], [], [], [], []
    for v in range(2):
        t = 12
        mask = np.zeros((t, 16, 16), bool)
        mask[4:9, 3 + v : 8 + v, 5:11] = True
        noise = rng.uniform(0, 0.1, mask.shape)
        error = noise + (mask if perfect else np.roll(mask, 8, axis=2))
        names.append(f"{v + 1:02d}")
        maps.append(error.astype(np.float16))
        masks.append(mask)
        labels.append(mask.reshape(t, -1).any(1).astype(np.int64))
        scores.append(error.reshape(t, -1).max(1).astype(np.float64))
    return video_eval.VideoPredictions(
        names, scores, labels, maps, masks, [np.ones(len(s), bool) for s in scores]
    )


def test_perfect_maps_give_perfect_metrics():
    config = autoencoder_demo.get_config("none").video_eval
    config.region_threshold = 0.5
    pred = _predictions()
    result, processed = video_eval.frame_metrics(pred, config)
    result.update(video_eval.region_metrics(pred, config))
    assert result["micro_auc_raw"] == result["macro_auc_raw"] == 1.0
    assert result["rbdc"] == pytest.approx(1.0) and result["tbdc"] == pytest.approx(1.0)
    assert [len(p) for p in processed] == [12, 12]


def test_regions_in_the_wrong_place_are_false_positives():
    config = autoencoder_demo.get_config("none").video_eval
    config.region_threshold = 0.5
    result = video_eval.region_metrics(_predictions(perfect=False), config)
    assert result["rbdc"] < 0.05 and result["tbdc"] < 0.05


def test_quantile_threshold_and_no_masks():
    config = autoencoder_demo.get_config("none").video_eval
    pred = _predictions()
    config.region_quantile = 0.9
    assert video_eval.region_threshold(pred, config) == pytest.approx(
        np.quantile(np.concatenate([m.ravel() for m in pred.maps]).astype(np.float32), 0.9)
    )
    pred.masks = [np.zeros_like(m) for m in pred.masks]
    assert np.isnan(video_eval.region_metrics(pred, config)["rbdc"])


def test_frame_scores_round_trip(tmp_path):
    pred = _predictions()
    processed = [s * 2 for s in pred.scores]
    video_eval.save_frame_scores(tmp_path / "frame_scores.npz", pred, processed)
    loaded = video_eval.load_frame_scores(tmp_path / "frame_scores.npz")
    assert list(loaded) == ["01", "02"]
    np.testing.assert_array_equal(loaded["02"]["scores"], processed[1])
    np.testing.assert_array_equal(loaded["01"]["raw"], pred.scores[0])
    np.testing.assert_array_equal(loaded["01"]["labels"], pred.labels[0])
