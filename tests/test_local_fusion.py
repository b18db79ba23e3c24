"""The fused map against NumPy / SciPy references (sspcab_jax.baselines), and its file's faults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from sspcab_jax import baselines
from sspcab_jax.detector import local_fusion as lf


def _images(n, size=12, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((n, size, size, channels)), (0, 1.5, 1.5, 0))
    return (smooth + 0.05 * rng.random((n, size, size, channels))).astype(np.float32)


@pytest.mark.parametrize("window", [3, 7])
def test_local_features_equal_scipys_reflected_box_filter(window):
    images = _images(3)
    got = np.asarray(lf.local_features(jnp.asarray(images), window))
    x = images.astype(np.float64)
    mean = ndimage.uniform_filter(x, (1, window, window, 1), mode="reflect")
    var = ndimage.uniform_filter(x**2, (1, window, window, 1), mode="reflect") - mean**2
    expected = np.concatenate([mean, np.sqrt(np.maximum(var, 0))], axis=-1)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # A corner pixel's window mirrors the edge pixel: checked by hand for the 3x3 case.
    if window == 3:
        corner = images[0, :2, :2, 0]
        by_hand = (4 * corner[0, 0] + 2 * corner[0, 1] + 2 * corner[1, 0] + corner[1, 1]) / 9
        np.testing.assert_allclose(got[0, 0, 0, 0], by_hand, atol=1e-6)


def _fusion(train, scales=(0.0, 1.0, 0.0, 1.0)):
    stats = baselines.fit_local_statistics(train, window=7)
    return lf.LocalFusion(
        stats.mean.astype("f4"), stats.std.astype("f4"), np.asarray(scales, "f4")
    ), stats


def test_local_map_equals_the_numpy_baseline():
    train, test = _images(8, seed=1), _images(4, seed=2)
    fusion, stats = _fusion(train)
    expected, _ = baselines.local_statistics_scores(stats, test)
    got = np.asarray(lf.local_map(fusion, jnp.asarray(test)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_fused_map_is_the_sum_of_both_maps_on_their_normal_scales():
    train, test = _images(8, seed=1), _images(2, seed=3)
    fusion, stats = _fusion(train, scales=(0.2, 0.5, 3.0, 4.0))
    model_map = np.random.default_rng(4).random((2, 12, 12)).astype(np.float32)
    local, _ = baselines.local_statistics_scores(stats, test)
    expected = (model_map - 0.2) / 0.5 + (local - 3.0) / 4.0
    got = np.asarray(lf.fused_map(fusion, jnp.asarray(model_map), jnp.asarray(test)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_fit_takes_median_and_99th_percentile_of_the_validation_maps():
    train, val = _images(10, seed=5), _images(4, seed=6)
    val_maps = np.random.default_rng(7).gamma(2.0, size=(4, 12, 12))
    # In uneven batches, as the run streams them: the sums must equal the whole-set figures.
    fusion = lf.fit_local_fusion([train[:3], train[3:7], train[7:]], [val[:1], val[1:]], val_maps)
    stats = baselines.fit_local_statistics(train.astype(np.float64), window=7)
    np.testing.assert_allclose(fusion.mean, stats.mean, atol=1e-6)
    np.testing.assert_allclose(fusion.std, stats.std, atol=1e-6)
    local, _ = baselines.local_statistics_scores(stats, val)
    expected = [
        np.median(val_maps),
        np.quantile(val_maps, 0.99) - np.median(val_maps),
        np.median(local),
        np.quantile(local, 0.99) - np.median(local),
    ]
    np.testing.assert_allclose(fusion.scales, expected, rtol=1e-3)


def _fit(train, val):
    return lf.fit_local_fusion([train], [val], np.ones(val.shape[:3]))


def test_fewer_than_two_training_images_are_refused():
    with pytest.raises(ValueError, match="2 training images or more, got 1"):
        _fit(_images(1), _images(2))


def test_a_constant_map_gets_a_nonzero_scale():
    assert lf.normal_scale(np.full((3, 4), 0.25)) == (0.25, 1.0)
    assert lf.normal_scale(np.array([0.0] * 200 + [2.0])) == (0.0, 2.0)


def test_fused_eval_step_jits_and_keeps_the_models_map():
    train, test = _images(8, seed=1), _images(3, seed=8)
    fusion, _ = _fusion(train, scales=(0.1, 2.0, 1.0, 3.0))

    def eval_step(state, images):
        amap = state * images.mean(axis=-1)
        return {"anomaly_map": amap, "score": amap.max(axis=(1, 2))}

    def score_fn(m):
        return m.mean(axis=(1, 2))

    out = jax.jit(lf.fuse_eval_step(eval_step, fusion, score_fn))(2.0, jnp.asarray(test))
    model_map = 2.0 * test.mean(axis=-1)
    np.testing.assert_allclose(out["model_anomaly_map"], model_map, atol=1e-6)
    fused = np.asarray(lf.fused_map(fusion, jnp.asarray(model_map), jnp.asarray(test)))
    # Jitted and eager float32 round the local variance differently: 1e-4 covers it.
    np.testing.assert_allclose(out["anomaly_map"], fused, atol=1e-4)
    np.testing.assert_allclose(out["score"], fused.mean(axis=(1, 2)), atol=1e-4)


def test_images_of_another_size_name_the_fix():
    fusion, _ = _fusion(_images(4))
    with pytest.raises(lf.FusionError, match="refit them at the model's input size"):
        lf.local_map(fusion, jnp.asarray(_images(1, size=16)))


def test_save_and_load_round_trip(tmp_path):
    fusion = _fit(_images(6), _images(2, seed=9))
    path = lf.save_fusion(fusion, tmp_path)
    assert path.name == lf.FILE_NAME and not list(tmp_path.glob(".*partial"))
    loaded = lf.load_fusion(tmp_path)
    for name in ("mean", "std", "scales"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fusion, name))


def _flip_byte_in_array_data(path):
    with np.load(path) as stored:
        needle = np.ascontiguousarray(stored["std"]).tobytes()[:64]
    raw = bytearray(path.read_bytes())
    at = raw.find(needle) + 32  # inside the stored std array, not in a zip header
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_byte_is_caught_and_names_the_fix(tmp_path):
    lf.save_fusion(_fit(_images(6), _images(2)), tmp_path)
    _flip_byte_in_array_data(tmp_path / lf.FILE_NAME)
    with pytest.raises(lf.FusionError, match="damaged.*train.calibrate --workdir="):
        lf.load_fusion(tmp_path)


def test_truncated_or_missing_file_names_the_fix(tmp_path):
    lf.save_fusion(_fit(_images(6), _images(2)), tmp_path)
    path = tmp_path / lf.FILE_NAME
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(lf.FusionError, match="damaged.*train.calibrate"):
        lf.load_fusion(tmp_path)
    path.unlink()
    with pytest.raises(lf.FusionError, match="missing.*train.calibrate"):
        lf.load_fusion(tmp_path)


def test_non_finite_statistics_are_refused(tmp_path):
    fusion = _fit(_images(6), _images(2))
    lf.save_fusion(fusion._replace(scales=np.array([0, np.nan, 0, 1], "f4")), tmp_path)
    with pytest.raises(lf.FusionError, match="not finite"):
        lf.load_fusion(tmp_path)


def test_a_fusion_of_other_weights_is_used_with_a_warning(tmp_path, caplog):
    fusion = _fit(_images(6), _images(2))
    lf.save_fusion(fusion, tmp_path, step=5)
    lf.load_fusion(tmp_path, step=5)
    assert "fitted on the maps of step" not in caplog.text
    lf.load_fusion(tmp_path, step=7)
    assert "fitted on the maps of step 5, not the restored step 7" in caplog.text
    assert f"train.calibrate --workdir={tmp_path}" in caplog.text
