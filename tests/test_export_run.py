"""`python -m train.export` on a real trained run: the artifact equals Detector.from_workdir."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sspcab_jax import Detector
from sspcab_jax.export import load
from sspcab_jax.training.restore import load_run
from train import cli
from train import export as command

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32  # configs/test.py


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """``(workdir, artifact path)``: the command run as a user runs it, in a fresh process."""
    workdir, _ = trained_run
    out = tmp_path_factory.mktemp("export") / "detector.jaxexport"
    args = [sys.executable, "-m", "train.export", f"--workdir={workdir}", f"--out={out}"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == str(out)
    return workdir, out


@pytest.fixture(scope="module")
def detectors(exported):
    workdir, out = exported
    return Detector.from_workdir(workdir), load(out)


def _images(n, h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _assert_same(expected, got):
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.score, expected.score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.normalized_score, expected.normalized_score, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)
    np.testing.assert_array_equal(got.defect_mask, expected.defect_mask)


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 32, 32), (3, 32, 32), (8, 32, 32)])
def test_artifact_equals_from_workdir_at_the_model_size(detectors, batch, height, width):
    detector, artifact = detectors
    images = _images(batch, height, width, seed=batch)
    expected = detector(images)
    _assert_same(expected, artifact(images))
    assert np.ptp(expected.anomaly_map) > 0  # a real map, not a constant


def test_artifact_equals_from_workdir_at_another_size(detectors):
    detector, artifact = detectors
    images = _images(3, 45, 38, seed=4)
    expected, got = detector(images), artifact(images)
    assert got.anomaly_map.shape == (3, 45, 38)
    _assert_same(expected, got)
    gray = _images(2, 20, 27, seed=5)[..., :1]
    _assert_same(detector(gray), artifact(gray))


def test_metadata_records_the_run(exported, detectors):
    workdir, _ = exported
    meta = detectors[1].metadata
    saved = json.loads((workdir / "calibration.json").read_text())
    assert meta["thresholds"] == {
        "image": saved["image_threshold"],
        "pixel": saved["pixel_threshold"],
    }
    assert meta["checkpoint"] == "best" and meta["platforms"] == ["cpu"]
    assert meta["image_size"] == [SIZE, SIZE] and meta["channels"] == 3
    assert meta["run"]["model"] == "draem"
    assert meta["placement"] == meta["run"]["sspcab_placement"]


def test_network_export_of_the_run_equals_the_flax_apply(exported, tmp_path):
    workdir, _ = exported
    out = command.main(
        ["export", f"--workdir={workdir}", f"--out={tmp_path}/net.jaxexport", "--what=network"]
    )
    _, model, state, _ = load_run(workdir, "best")
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = np.random.default_rng(6).random((3, SIZE, SIZE, 3)).astype(np.float32)
    reconstruction, logits = load(out)(images)
    expected = model.apply(variables, images, train=False)
    np.testing.assert_allclose(reconstruction, expected[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits, expected[1], rtol=0, atol=1e-5)


def test_cpu_is_always_among_the_platforms(exported, tmp_path):
    workdir, _ = exported
    out = command.main(
        ["export", f"--workdir={workdir}", f"--out={tmp_path}/c.jaxexport", "--platforms=cuda"]
    )
    artifact = load(out)  # runs here although only cuda was asked for
    assert artifact.metadata["platforms"] == ["cpu", "cuda"]
    images = _images(2, SIZE, SIZE, seed=8)
    _assert_same(Detector.from_workdir(workdir)(images), artifact(images))


def test_tiled_export_of_the_run_equals_the_tiled_detector(exported, tmp_path):
    workdir, _ = exported
    flags = ["--tile_size=24", "--tile_overlap=4", "--input_size=60,50"]
    out = command.main(["export", f"--workdir={workdir}", f"--out={tmp_path}/t.jaxexport", *flags])
    detector = Detector.from_workdir(workdir, tile_size=24, tile_overlap=4)
    images = _images(3, 60, 50, seed=7)
    _assert_same(detector(images), load(out)(images))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--platforms=gpu9"], "platforms must be among"),
        (["--tile_size=24"], "--input_size=H,W"),
        (["--tile_size=24", "--input_size=60"], "--input_size must be H,W"),
        (["--what=network", "--tile_size=24"], "apply to --what=detector only"),
    ],
)
def test_bad_flags_name_the_fix(exported, tmp_path, flags, message):
    workdir, _ = exported
    with pytest.raises(cli.CommandError, match=message):
        command.main(["export", f"--workdir={workdir}", f"--out={tmp_path}/x.jaxexport", *flags])
