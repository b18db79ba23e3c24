"""Exported detectors (`sspcab_jax.export`): parity with the in-process Detector, errors."""

import json
import subprocess
import sys
import textwrap
import zipfile

import jax
import numpy as np
import pytest

from sspcab_jax import Calibration, Detector, Draem
from sspcab_jax.detector.thresholds import normalize
from sspcab_jax.export import export_detector, export_network, load
from sspcab_jax.export.lower import below_or_equal_f32, normalize_f32

SIZE = 32


@pytest.fixture(scope="module")
def model_and_variables():
    model = Draem(recon_width=8, disc_width=8)
    variables = model.init(jax.random.key(0), np.zeros((1, SIZE, SIZE, 3), np.float32), train=False)
    return model, variables


@pytest.fixture(scope="module")
def detector(model_and_variables):
    model, variables = model_and_variables
    raw = Detector.from_flax(model, variables, None, SIZE)(_images(8, SIZE, SIZE, seed=1))
    scores, values = np.sort(raw.score), np.sort(raw.anomaly_map.ravel())
    # Thresholds between observed values, so that verdicts are mixed and not knife-edge ties.
    calibration = Calibration(
        image_threshold=float(scores[3] + scores[4]) / 2,
        pixel_threshold=float(values[values.size // 2] + values[values.size // 2 + 1]) / 2,
        image_min=float(scores[0]),
        image_max=float(scores[-1]),
        pixel_min=float(values[0]),
        pixel_max=float(values[-1]),
        source="false_alarm_rate",
        pixel_source="false_alarm_rate",
    )
    return Detector.from_flax(model, variables, calibration, SIZE)


@pytest.fixture(scope="module")
def artifact(detector, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "detector.jaxexport"
    export_detector(detector, path, metadata={"placement": "none"})
    return path


@pytest.fixture(scope="module")
def loaded(artifact):
    return load(artifact)


def _images(n, h, w, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, channels), dtype=np.uint8)


def _assert_same(expected, got):
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.score, expected.score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.normalized_score, expected.normalized_score, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)
    np.testing.assert_array_equal(got.defect_mask, expected.defect_mask)
    assert got.anomaly_map.dtype == np.float32 and got.defect_mask.dtype == bool


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_parity_at_model_size_for_several_batch_sizes(detector, loaded, batch):
    images = _images(batch, SIZE, SIZE, seed=batch)
    _assert_same(detector(images), loaded(images))


def test_parity_at_another_input_size_and_verdicts_are_mixed(detector, loaded):
    images = _images(8, 45, 38, seed=7)
    expected, got = detector(images), loaded(images)
    assert got.anomaly_map.shape == (8, 45, 38)
    _assert_same(expected, got)
    # Mixed verdicts: a comparison that cannot fail by every output being the same constant.
    assert 0 < expected.defect_mask.mean() < 1


def test_parity_for_float_grayscale_single_and_list_inputs(detector, loaded):
    floats = np.random.default_rng(3).random((3, SIZE, SIZE, 3)).astype(np.float32)
    _assert_same(detector(floats), loaded(floats))
    resized = np.random.default_rng(8).random((2, 41, 27, 3)).astype(np.float32)
    _assert_same(detector(resized), loaded(resized))
    gray = _images(2, 20, 24, seed=4, channels=1)
    _assert_same(detector(gray), loaded(gray))
    one = _images(1, SIZE, SIZE, seed=5)[0]
    _assert_same(detector(one), loaded(one))
    mixed = [_images(1, 40, 40, seed=6)[0], floats[0]]
    expected, got = detector(mixed), loaded(mixed)
    for e, g in zip(expected.anomaly_map, got.anomaly_map, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)


def test_batch_dimension_is_symbolic_in_the_stored_function(artifact):
    with zipfile.ZipFile(artifact) as archive:
        exported = jax.export.deserialize(bytearray(archive.read("entries/uint8.jaxexport")))
    batch = exported.in_avals[-1].shape[0]
    assert not isinstance(batch, int) and str(batch) == "N"
    assert exported.in_avals[-1].shape[1:] == (SIZE, SIZE, 3)
    assert exported.platforms == ("cpu",)


def test_round_trip_through_bytes_and_metadata(artifact, detector, tmp_path):
    copy = tmp_path / "copy.jaxexport"
    copy.write_bytes(artifact.read_bytes())
    reloaded = load(copy)
    images = _images(3, SIZE, SIZE, seed=9)
    _assert_same(detector(images), reloaded(images))
    meta = reloaded.metadata
    assert meta["format_version"] == 1 and meta["kind"] == "detector"
    assert meta["image_size"] == [SIZE, SIZE] and meta["channels"] == 3
    assert meta["thresholds"]["image"] == detector.calibration.image_threshold
    assert meta["jax_version"] == jax.__version__ and meta["placement"] == "none"


# What the loader must run without: the training stack and every image library.
NOT_NEEDED = (
    "flax", "optax", "orbax", "chex", "dm_pix", "ml_collections", "absl", "grain",
    "tensorflow", "tensorflow_datasets", "array_record", "PIL", "cv2", "skimage", "imageio",
    "matplotlib", "tqdm", "tensorboardX", "torch", "sklearn",
)  # fmt: skip


def test_loader_runs_with_only_jax_and_numpy(artifact, detector, tmp_path):
    images = _images(2, 50, 44, seed=11)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import sys
        for name in {NOT_NEEDED!r}:
            sys.modules[name] = None  # any import of it now raises ImportError
        import numpy as np
        import sspcab_jax.export
        images = np.load({str(tmp_path / "images.npy")!r})
        result = sspcab_jax.export.load({str(artifact)!r})(images)
        assert "sspcab_jax.models" not in sys.modules and "sspcab_jax.training" not in sys.modules
        print(repr(result.score.tolist()))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = np.asarray(eval(run.stdout.strip().splitlines()[-1]), np.float32)
    np.testing.assert_allclose(got, detector(images).score, rtol=0, atol=1e-6)


def test_normalisation_and_threshold_rounding_against_hand_values():
    # t = 2, lo = 0, hi = 6: 1 -> 0.25, 2 -> 0.5, 4 -> 0.5 + 0.5 * 2 / 4, 8 -> 1 (clipped).
    values = np.asarray([-1.0, 1.0, 2.0, 4.0, 8.0], np.float32)
    np.testing.assert_allclose(normalize_f32(values, 2.0, 0.0, 6.0), [0, 0.25, 0.5, 0.75, 1.0])
    # A float64 threshold just below a float32 value: that value is above it.
    t = float(np.float32(0.3)) - 1e-12
    assert below_or_equal_f32(t) < np.float32(0.3) <= np.float32(np.float32(0.3))
    near = np.asarray([np.float32(0.3), np.nextafter(np.float32(0.3), np.float32(0))], np.float32)
    assert (np.asarray(normalize_f32(near, t, 0.0, 1.0)) > 0.5).tolist() == [True, False]
    np.testing.assert_allclose(normalize_f32(near, t, 0.0, 1.0), normalize(near, t, 0.0, 1.0))


def test_bad_input_names_the_expected_shape(loaded):
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        loaded(np.zeros((2, 1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\].*resized to 32x32"):
        loaded(np.zeros((2, SIZE, SIZE, 4), np.uint8))
    with pytest.raises(ValueError, match=r"dtype bool.*\[N, H, W, 3\]"):
        loaded(np.zeros((2, SIZE, SIZE, 3), bool))


def test_unknown_format_version_is_refused(artifact, tmp_path):
    edited = tmp_path / "future.jaxexport"
    with zipfile.ZipFile(artifact) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "metadata.json":
                data = json.dumps(dict(json.loads(data), format_version=99)).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"format version 99.*reads version 1"):
        load(edited)
    with pytest.raises(ValueError, match="not an sspcab_jax export"):
        (tmp_path / "junk.jaxexport").write_bytes(b"junk")
        load(tmp_path / "junk.jaxexport")


def test_artifact_for_another_platform_is_refused(detector, tmp_path):
    path = export_detector(detector, tmp_path / "cuda.jaxexport", platforms=("cuda",))
    with pytest.raises(ValueError, match=r"exported for \['cuda'\].*--platforms=cuda,cpu"):
        load(path)


def test_uncalibrated_detector_gives_maps_and_scores_only(model_and_variables, tmp_path):
    model, variables = model_and_variables
    plain = Detector.from_flax(model, variables, None, SIZE)
    images = _images(3, 40, 40, seed=12)
    got = load(export_detector(plain, tmp_path / "plain.jaxexport"))(images)
    expected = plain(images)
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, rtol=0, atol=1e-6)
    assert got.normalized_score is None and got.is_anomalous is None and got.defect_mask is None


def test_network_export_matches_the_flax_apply(model_and_variables, tmp_path):
    model, variables = model_and_variables
    path = export_network(
        lambda v, x: model.apply(v, x, train=False),
        variables,
        (SIZE, SIZE),
        3,
        tmp_path / "net.jaxexport",
    )
    network = load(path)
    images = np.random.default_rng(13).random((3, SIZE, SIZE, 3)).astype(np.float32)
    reconstruction, logits = network(images)
    expected = model.apply(variables, images, train=False)
    np.testing.assert_allclose(reconstruction, expected[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits, expected[1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[N, 32, 32, 3\]"):
        network(images[:, :16])


def test_serve_example_prints_the_detectors_scores(artifact, detector, tmp_path):
    from PIL import Image

    images = _images(2, 40, 36, seed=15)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"part{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    script = "examples/serve_exported.py"
    run = subprocess.run(
        [sys.executable, script, str(artifact), str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    rows = [line.split("\t") for line in run.stdout.strip().splitlines()]
    expected = detector(images)
    assert [r[0] for r in rows] == ["part0.png", "part1.png"]
    np.testing.assert_allclose([float(r[1]) for r in rows], expected.score, atol=1e-6)
    verdicts = ["anomalous" if v else "normal" for v in expected.is_anomalous]
    assert [r[2] for r in rows] == verdicts
