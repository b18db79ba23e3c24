"""A trained run with ``calibration.fuse_local_statistics``: every consumer scores the fused map.

The reference is computed here in NumPy from the run's own images: the learning-free baseline
(sspcab_jax.baselines) plus the model's map from an unfused detector, each centred on the median
of its validation pixels and divided by the distance to their 99th percentile.
"""

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from configs import test as test_config
from sspcab_jax import Detector, baselines
from sspcab_jax.detector.local_fusion import FILE_NAME, FusionError
from sspcab_jax.export import load
from sspcab_jax.training import evaluation, loop
from sspcab_jax.training.data_setup import build_split_sources
from sspcab_jax.training.fusion import attach_saved_fusion, fit_run_fusion
from sspcab_jax.training.restore import load_run
from sspcab_jax.training.tasks import get_task
from train import calibrate as calibrate_command
from train import cli
from train import evaluate as evaluate_command

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    """``(workdir, final metrics, printed)`` of configs/test.py with the fusion on."""
    config = test_config.get_config()
    config.calibration.fuse_local_statistics = True
    config.data.val_fraction = 0.25
    workdir = tmp_path_factory.mktemp("fused")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        final = loop.train_and_evaluate(config, workdir)
    return workdir, final, printed.getvalue()


def _split_images(workdir):
    config, model, state, _ = load_run(workdir, "latest")
    splits = build_split_sources(config, workdir)

    def images(source):
        batches = list(evaluation.config_batches(config, source))
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    return config, model, state, [images(s) for s in splits]


def _normal_scale(values):
    return np.median(values), np.quantile(values, 0.99) - np.median(values)


def _reference_maps(workdir):
    """The fused maps of the test split, computed from scratch in NumPy."""
    _, model, state, (train, val, test) = _split_images(workdir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    plain = Detector.from_flax(model, variables, None, 32)
    stats = baselines.fit_local_statistics(train["image"].astype(np.float64), window=7)
    model_centre, model_scale = _normal_scale(plain(val["image"]).anomaly_map)
    local_centre, local_scale = _normal_scale(
        baselines.local_statistics_scores(stats, val["image"])[0]
    )
    model_map = plain(test["image"]).anomaly_map
    local_map, _ = baselines.local_statistics_scores(stats, test["image"])
    fused = (model_map - model_centre) / model_scale + (local_map - local_centre) / local_scale
    return fused, test


def test_the_detector_of_the_run_scores_the_fused_map(fused_run):
    workdir, final, printed = fused_run
    assert (workdir / FILE_NAME).is_file()
    expected, test = _reference_maps(workdir)
    got = Detector.from_workdir(workdir, "latest")(test["image"])
    # float32 local variances (E[x^2] - mean^2) against float64 ones: where a training pixel's
    # spread is near the 1e-3 floor, a 1e-6 difference becomes 1e-3 in its z-score.
    difference = np.abs(got.anomaly_map - expected)
    assert difference.max() < 1e-2 and np.quantile(difference, 0.999) < 1e-3
    # The run's reported figures are the detector's: recomputed with scikit-learn.
    auroc = roc_auc_score(test["label"], got.score)
    assert final["image_auroc"] == pytest.approx(auroc, abs=1e-6)
    assert "model_image_auroc" in final and "fused with local statistics" in printed


def test_metrics_file_and_train_evaluate_agree(fused_run):
    workdir, final, _ = fused_run
    written = json.loads((workdir / "metrics.json").read_text())
    assert written["pixel_auroc"] == pytest.approx(final["pixel_auroc"])
    assert written["model_pixel_auroc"] == pytest.approx(final["model_pixel_auroc"])
    summary = evaluate_command.main(["evaluate", f"--workdir={workdir}", "--which=latest"])
    assert summary["pixel_auroc"] == pytest.approx(final["pixel_auroc"], abs=1e-6)
    assert summary["image_auroc"] == pytest.approx(final["image_auroc"], abs=1e-6)


def test_exported_artifact_equals_the_fused_detector(fused_run, tmp_path):
    workdir, _, _ = fused_run
    out = tmp_path / "fused.jaxexport"
    args = [sys.executable, "-m", "train.export", f"--workdir={workdir}", f"--out={out}"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert load(out).metadata["local_fusion"] is True
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected, got = Detector.from_workdir(workdir)(images), load(out)(images)
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)


def test_a_damaged_file_is_refused_and_train_calibrate_refits_it(fused_run, monkeypatch, capsys):
    workdir, _, _ = fused_run
    images = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    before = Detector.from_workdir(workdir, "latest")(images).anomaly_map
    path = workdir / FILE_NAME
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(FusionError, match=f"damaged.*train.calibrate --workdir={workdir}"):
        Detector.from_workdir(workdir, "latest")
    # The commands say it in one line.
    monkeypatch.setattr("sys.argv", ["evaluate", f"--workdir={workdir}", "--which=latest"])
    with pytest.raises(SystemExit) as info:
        cli.run(evaluate_command.main)
    err = capsys.readouterr().err.strip()
    assert info.value.code == cli.ERROR_EXIT and "\n" not in err
    assert err.startswith("error: ") and "train.calibrate" in err
    with contextlib.redirect_stdout(io.StringIO()):
        calibrate_command.main(["calibrate", f"--workdir={workdir}", "--which=latest"])
    after = Detector.from_workdir(workdir, "latest")(images).anomaly_map
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_without_validation_images_the_model_map_is_kept(fused_run, caplog):
    workdir, _, _ = fused_run
    config, model, state, _ = load_run(workdir, "latest")
    config.data.val_fraction = 0.0
    task = get_task(config)
    train, val, _ = build_split_sources(config, workdir)
    assert not fit_run_fusion(task, model, state, train, val, None)
    assert task.local_fusion is None and "needs validation images" in caplog.text
    assert attach_saved_fusion(task, workdir).local_fusion is None


def test_fusion_benchmark_scores_the_run_three_ways(fused_run):
    from benchmarks import fusion as fusion_benchmark

    workdir, final, _ = fused_run
    scored = fusion_benchmark.score_run(str(workdir))
    assert scored["fused"]["metrics"]["pixel_auroc"] == pytest.approx(final["pixel_auroc"])
    assert scored["model"]["metrics"]["pixel_auroc"] == pytest.approx(final["model_pixel_auroc"])
    config, _, _, (train, _, test) = _split_images(workdir)
    stats = baselines.fit_local_statistics(train["image"], window=7)
    maps, _ = baselines.local_statistics_scores(stats, test["image"])
    mask = np.asarray(test["mask"])[..., 0] >= 0.5
    pixel = roc_auc_score(mask.reshape(-1), maps.reshape(-1))
    assert scored["baseline"]["metrics"]["pixel_auroc"] == pytest.approx(pixel, abs=1e-6)
    assert set(scored["fused"]["kinds"]) and config.calibration.fuse_local_statistics
