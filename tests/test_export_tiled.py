"""Exported tiled detectors, and the loader's Pillow-free resize (against Pillow itself)."""

import numpy as np
import pytest
from PIL import Image

from sspcab_jax import Calibration, Detector, Draem
from sspcab_jax.export import export_detector, load
from sspcab_jax.export.resize import resize_float, resize_uint8, vertical_first

SIZE, TILE, OVERLAP = 32, 40, 8
INPUT = (100, 70)  # tiled at 80x56 model pixels: a 3 x 2 grid of 32x32 tiles


def _pillow(image, size):
    """Pillow's bilinear resize of ``uint8 [H, W, C]`` or a float32 plane ``[H, W]``."""
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize(size[::-1], Image.Resampling.BILINEAR))
    return out[..., None] if squeeze else out


# Shrinking, enlarging, mixed, one axis only, and both pass orders (vertical first when the
# height shrinks by more than twice as many pixels as the width).
SIZES = [
    ((45, 38), (32, 32)),
    ((64, 64), (32, 32)),
    ((40, 30), (20, 20)),
    ((41, 30), (20, 20)),
    ((100, 20), (50, 10)),
    ((30, 13), (55, 93)),
    ((13, 30), (93, 55)),
    ((256, 200), (32, 32)),
    ((7, 100), (64, 17)),
    ((32, 32), (32, 48)),
    ((32, 32), (20, 32)),
]


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_uint8_resize_equals_pillow_bit_for_bit(shape, size):
    rng = np.random.default_rng(sum(shape) + sum(size))
    for channels in (1, 3):
        image = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
        got = np.asarray(resize_uint8(image, size))
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, _pillow(image, size))


def test_uint8_resize_of_a_batch_equals_pillow_per_image():
    images = np.random.default_rng(0).integers(0, 256, (3, 45, 38, 3), dtype=np.uint8)
    got = np.asarray(resize_uint8(images, (32, 32)))
    for image, one in zip(images, got, strict=True):
        np.testing.assert_array_equal(one, _pillow(image, (32, 32)))


def test_pass_order_rule_on_hand_picked_sizes():
    # Height shrinks by 13 vs width 6: more than twice -> vertical first; 20 vs 10: not more.
    assert vertical_first((45, 38), (32, 32))
    assert not vertical_first((40, 30), (20, 20))
    assert not vertical_first((30, 13), (55, 93))  # enlarging: horizontal first
    assert vertical_first((100, 20), (50, 70))  # height shrinks, width grows


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_float_resize_equals_pillow_bit_for_bit(shape, size):
    planes = np.random.default_rng(1).random((2, *shape)).astype(np.float32) * 3.0
    got = resize_float(planes, size)
    assert got.dtype == np.float32 and got.shape == (2, *size)
    for plane, one in zip(planes, got, strict=True):
        np.testing.assert_array_equal(one, _pillow(plane, size))


@pytest.fixture(scope="module")
def tiled_detector():
    import jax

    model = Draem(recon_width=8, disc_width=8)
    variables = model.init(jax.random.key(0), np.zeros((1, SIZE, SIZE, 3), np.float32), train=False)
    kwargs = dict(tile_size=TILE, tile_overlap=OVERLAP, batch_size=4)
    raw = Detector.from_flax(model, variables, None, SIZE, **kwargs)(_images(6, *INPUT, seed=1))
    scores, values = np.sort(raw.score), np.sort(raw.anomaly_map.ravel())
    # Random weights give maps packed in a narrow band; the pixel threshold sits in the widest
    # gap of their upper part, so that few pixels fall within float32 rounding of it.
    low, high = int(values.size * 0.6), int(values.size * 0.97)
    gap = low + int(np.argmax(np.diff(values[low:high])))
    calibration = Calibration(
        image_threshold=float(scores[2] + scores[3]) / 2,
        pixel_threshold=float(values[gap] + values[gap + 1]) / 2,
        image_min=float(scores[0]),
        image_max=float(scores[-1]),
        pixel_min=float(values[0]),
        pixel_max=float(values[-1]),
        source="false_alarm_rate",
        pixel_source="false_alarm_rate",
    )
    return Detector.from_flax(model, variables, calibration, SIZE, **kwargs)


@pytest.fixture(scope="module")
def tiled_artifact(tiled_detector, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiled") / "tiled.jaxexport"
    return load(export_detector(tiled_detector, path, input_size=INPUT))


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _assert_same(expected, got, pixel_threshold):
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.score, expected.score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.normalized_score, expected.normalized_score, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)
    # The tiled network runs image by image in the artifact and on whole batches in the
    # detector, so maps may differ in the last float32 bit: pixels that close to the
    # threshold may flip; every other pixel's verdict is identical.
    clear = np.abs(np.asarray(expected.anomaly_map) - pixel_threshold) > 1e-6
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got.defect_mask[clear], expected.defect_mask[clear])


@pytest.mark.parametrize("batch", [1, 3, 6])
def test_tiled_artifact_equals_the_tiled_detector(tiled_detector, tiled_artifact, batch):
    assert tiled_detector.tiled_model_size(INPUT) == (80, 56)
    images = _images(batch, *INPUT, seed=10 + batch)
    expected = tiled_detector(images)
    _assert_same(expected, tiled_artifact(images), tiled_detector.calibration.pixel_threshold)
    assert expected.anomaly_map.shape == (batch, *INPUT)
    assert 0 < expected.defect_mask.mean() < 1


def test_tiled_artifact_resizes_images_smaller_than_a_tile(tiled_detector, tiled_artifact):
    threshold = tiled_detector.calibration.pixel_threshold
    small = _images(2, 30, 36, seed=20)
    _assert_same(tiled_detector(small), tiled_artifact(small), threshold)
    floats = np.random.default_rng(21).random((2, *INPUT, 3)).astype(np.float32)
    _assert_same(tiled_detector(floats), tiled_artifact(floats), threshold)
    mixed = [small[0], _images(1, *INPUT, seed=22)[0]]
    expected, got = tiled_detector(mixed), tiled_artifact(mixed)
    for e, g in zip(expected.anomaly_map, got.anomaly_map, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.is_anomalous, expected.is_anomalous)


def test_tiled_artifact_names_the_size_it_was_exported_for(tiled_artifact):
    assert tiled_artifact.metadata["tiling"] == {
        "tile_size": [TILE, TILE],
        "tile_overlap": OVERLAP,
        "input_size": list(INPUT),
        "tiled_size": [80, 56],
    }
    with pytest.raises(ValueError, match=r"90x70.*100x70 \(tiled\).*--input_size=90,70"):
        tiled_artifact(_images(1, 90, 70))


def test_tiled_export_needs_an_input_size_of_at_least_one_tile(tiled_detector, tmp_path):
    with pytest.raises(ValueError, match=r"input_size=\(H, W\).*--input_size=H,W"):
        export_detector(tiled_detector, tmp_path / "a.jaxexport")
    with pytest.raises(ValueError, match=r"30x70 is smaller than one tile"):
        export_detector(tiled_detector, tmp_path / "b.jaxexport", input_size=(30, 70))
