"""Detector inputs: accepted forms, conversions as in training, errors, compilation reuse."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

import sspcab_jax
from sspcab_jax import data
from sspcab_jax.detector import Calibration, Detector, calibrate_from_normals
from sspcab_jax.detector.inputs import resize_to_float
from sspcab_jax.training.tasks import get_task


def probe(seen=None):
    """Model whose map is the input's first channel; records its inputs in ``seen``."""

    def model_fn(images):
        if seen is not None:
            jax.debug.callback(lambda x: seen.append(np.asarray(x)), images)
        amap = images[..., 0]
        return amap, jnp.mean(amap, axis=(1, 2))

    return model_fn


def rgb(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_accepted_forms_agree(tmp_path):
    image = rgb((32, 32, 3))
    path = tmp_path / "part.png"
    Image.fromarray(image).save(path)
    detector = Detector(probe(), 32)
    reference = detector(image)
    assert reference.anomaly_map.shape == (1, 32, 32) and reference.score.shape == (1,)
    np.testing.assert_allclose(reference.anomaly_map[0], image[..., 0] / 255, atol=1e-7)
    for form in (image[None], jnp.asarray(image), image / 255.0, (image / 255).astype(np.float16)):
        np.testing.assert_allclose(detector(form).anomaly_map, reference.anomaly_map, atol=5e-4)
    for form in (str(path), path):
        np.testing.assert_array_equal(detector(form).anomaly_map, reference.anomaly_map)
    listed = detector([path, image])
    assert isinstance(listed.anomaly_map, list) and len(listed) == 2
    np.testing.assert_array_equal(listed.anomaly_map[0], reference.anomaly_map[0])
    np.testing.assert_array_equal(listed.score, np.repeat(reference.score, 2))


def test_maps_come_back_at_each_image_size():
    detector = Detector(probe(), 32)
    batch = detector(rgb((3, 48, 40, 3)))
    assert batch.anomaly_map.shape == (3, 48, 40) and batch.anomaly_map.dtype == np.float32
    mixed = detector([rgb((48, 40, 3)), rgb((20, 70)), rgb((32, 32, 1))])
    assert [m.shape for m in mixed.anomaly_map] == [(48, 40), (20, 70), (32, 32)]
    assert mixed.normalized_score is None and mixed.defect_mask is None  # no calibration


def test_resizing_matches_the_evaluation_pipeline():
    image = rgb((64, 48, 3), seed=1)
    expected = data.prepare_example({"image": image}, image_size=32)["image"]
    np.testing.assert_array_equal(resize_to_float(image, (32, 32)), expected)
    seen = []
    Detector(probe(seen), 32)(image)
    np.testing.assert_array_equal(seen[0][0], expected)
    # Float input goes through the same filter without the uint8 rounding (Pillow rounds
    # after each of its two passes, so up to 1 / 255 apart).
    as_float = resize_to_float(image.astype(np.float32) / 255, (32, 32))
    np.testing.assert_allclose(as_float, expected, atol=1 / 255 + 1e-6)
    # Grayscale input of an RGB model is repeated, as the pipeline does.
    gray = rgb((64, 48, 1), seed=2)
    seen.clear()
    Detector(probe(seen), 32)(gray[..., 0])
    expected_gray = data.prepare_example({"image": gray}, image_size=32)["image"]
    np.testing.assert_array_equal(seen[0][0], expected_gray)


def test_channel_order_and_grayscale_conversion_follow_training():
    image = rgb((40, 40, 3), seed=3)
    model_input = data.prepare_example({"image": image}, image_size=32)["image"]
    seen = []
    Detector(probe(seen), 32, input_channel_order="bgr")(image)
    np.testing.assert_array_equal(seen[0][0], model_input[..., ::-1])
    seen.clear()
    Detector(probe(seen), 32, channels=1)(image)
    config = ml_collections.ConfigDict({"model": "autoencoder", "autoencoder": {"channels": 1}})
    luma = get_task(config).to_model_input(model_input)
    np.testing.assert_allclose(seen[0][0], luma, atol=1e-6)
    seen.clear()
    Detector(probe(seen), 32, channels=1)([image[..., :1], image[..., 0]])
    assert seen[0].shape == (2, 32, 32, 1)
    np.testing.assert_array_equal(seen[0][0], seen[0][1])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 2, 32, 32, 3), np.uint8), "shape"),
        (np.zeros(32, np.uint8), "shape"),
        (np.zeros((32, 32, 4), np.uint8), "1 .grayscale. or 3 .RGB. channels"),
        (np.zeros((32, 32, 2), np.float32), "channels"),
        (np.full((32, 32, 3), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((32, 32, 3), -0.1, np.float32), r"\[0, 1\]"),
        (np.full((32, 32, 3), 300, np.int32), "0-255"),
        (np.full((32, 32, 3), -1, np.int64), "0-255"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
        (np.zeros((32, 32, 3), bool), "dtype"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty batch"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        ([], "empty list"),
        ([np.zeros((32, 32, 3)), np.zeros((2, 32, 32, 3))], "image 1"),
    ],
)
def test_bad_input_says_what_was_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        Detector(probe(), 32)(bad)


def test_unreadable_files_are_named(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    detector = Detector(probe(), 32)
    with pytest.raises(ValueError, match="broken.png"):
        detector(broken)
    with pytest.raises(ValueError, match="missing.png"):
        detector([rgb((32, 32, 3)), str(tmp_path / "missing.png")])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(channels=2), "channels"),
        (dict(input_channel_order="hsv"), "input_channel_order"),
        (dict(channels=1, input_channel_order="bgr"), "3-channel"),
        (dict(batch_size=0), "batch_size"),
        (dict(image_size=0), "image_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"image_size": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        Detector(probe(), **kwargs)


def test_one_trace_per_batch_shape():
    traces = []

    def model_fn(images):
        traces.append(images.shape[0])
        return probe()(images)

    detector = Detector(model_fn, 32, batch_size=4)
    for count in (3, 3, 4):
        detector(rgb((count, 32, 32, 3)))
    assert traces == [4]  # 3 images are padded to 4; nothing retraced
    detector(rgb((5, 32, 32, 3)))  # 4 + 1
    detector(rgb((6, 40, 40, 3)))  # 4 + 2 (padded to 2)
    detector(rgb((7, 32, 32, 3)))  # 4 + 3 (padded to 4)
    assert traces == [4, 1, 2]


def test_verdicts_follow_the_calibration():
    images = rgb((6, 32, 32, 3), seed=4)
    detector = Detector(probe(), 32)
    validation = detector(images[:4])
    cal = calibrate_from_normals(validation.score, validation.anomaly_map, 0.25)
    out = Detector(probe(), 32, cal)(images)
    np.testing.assert_array_equal(out.is_anomalous, out.score > cal.image_threshold)
    np.testing.assert_array_equal(out.normalized_score > 0.5, out.is_anomalous)
    np.testing.assert_array_equal(out.defect_mask, out.anomaly_map > cal.pixel_threshold)
    assert out.is_anomalous[:4].sum() == 1  # 1 of 4 validation images may exceed at 25 %
    unavailable = Detector(probe(), 32, Calibration.unavailable("no validation images"))(images)
    assert not unavailable.calibrated and unavailable.is_anomalous is None


def test_from_flax_grayscale_autoencoder_and_from_eval_step():
    model = sspcab_jax.ConvAutoencoder(channels=1)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
    detector = Detector.from_flax(model, variables, None, 32)
    assert detector.channels == 1
    image = rgb((50, 40, 3), seed=5)
    out = detector(image)
    config = ml_collections.ConfigDict({"model": "autoencoder", "autoencoder": {"channels": 1}})
    gray = get_task(config).to_model_input(
        data.prepare_example({"image": image}, image_size=32)["image"][None]
    )
    reconstruction = model.apply(variables, jnp.asarray(gray))
    expected_score = np.mean((np.asarray(reconstruction) - gray) ** 2)
    np.testing.assert_allclose(out.score, [expected_score], rtol=1e-5)
    assert out.anomaly_map.shape == (1, 50, 40)

    def eval_step(state, images):
        amap = jnp.abs(images[..., 0] - state["level"])
        return {"anomaly_map": amap, "score": amap.max(axis=(1, 2)), "reconstruction": images}

    from_step = Detector.from_eval_step(eval_step, {"level": 0.5}, None, 32)
    flat = np.full((32, 32, 3), 0.25, np.float32)
    np.testing.assert_allclose(from_step(flat).score, [0.25])
    with pytest.raises(TypeError, match="eval_step"):
        Detector.from_flax(object(), variables, None, 32)
