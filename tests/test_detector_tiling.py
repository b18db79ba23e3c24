"""Tiling: grid, stitching weights, and detection of small defects in large images."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sspcab_jax
from sspcab_jax.detector import Calibration, Detector
from sspcab_jax.detector.tiling import stitch_maps, tile_origins, tile_window

BACKGROUND = 128  # uint8 grey of the synthetic parts


def deviation_model(images):
    """Hand-written model: the map is |x - grey| per pixel (channel mean), the score its max."""
    amap = jnp.mean(jnp.abs(images - BACKGROUND / 255.0), axis=-1)
    return amap, jnp.max(amap, axis=(1, 2))


def max_score(amap):
    return jnp.max(amap, axis=(1, 2))


@pytest.mark.parametrize(
    "length, tile, overlap, expected",
    [
        (1024, 256, 0, [0, 256, 512, 768]),
        (1024, 256, 32, [0, 224, 448, 672, 768]),  # stride 224; the last tile meets the border
        (300, 256, 0, [0, 44]),
        (256, 256, 10, [0]),
        (100, 32, 8, [0, 24, 48, 68]),
    ],
)
def test_tile_origins_hand_computed(length, tile, overlap, expected):
    assert tile_origins(length, tile, overlap) == expected


@pytest.mark.parametrize("seed", range(4))
def test_tile_grid_covers_every_pixel(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        tile = int(rng.integers(1, 64))
        overlap = int(rng.integers(0, tile))
        length = int(rng.integers(tile, 400))
        origins = tile_origins(length, tile, overlap)
        covered = np.zeros(length, int)
        for origin in origins:
            covered[origin : origin + tile] += 1
        assert covered.min() >= 1
        assert origins[0] == 0 and origins[-1] == length - tile
        assert all(b - a <= tile - overlap for a, b in zip(origins, origins[1:], strict=False))


def test_tile_origins_reject_bad_overlap_and_small_images():
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_origins(100, 32, 32)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tile_origins(20, 32, 0)


def test_window_and_stitching_hand_computed():
    np.testing.assert_array_equal(tile_window(8, 0), np.ones(8))
    np.testing.assert_allclose(tile_window(8, 4), [0.2, 0.4, 0.6, 0.8, 0.8, 0.6, 0.4, 0.2])
    # Row of 12 pixels, tiles of 8 with overlap 4 at x = 0 and 4, tile maps 1 and 3:
    # x 4..7 blend with weights (0.8, 0.2), (0.6, 0.4), (0.4, 0.6), (0.2, 0.8).
    maps = jnp.stack([jnp.ones((1, 8)), 3 * jnp.ones((1, 8))])[None]  # [N=1, K=2, 1, 8]
    stitched = np.asarray(stitch_maps(maps, (1, 12), (0, 4)))[0, 0]
    expected = [1, 1, 1, 1, 1.4, 1.8, 2.2, 2.6, 3, 3, 3, 3]
    np.testing.assert_allclose(stitched, expected, rtol=1e-6)


def _part_with_defect(size=1024, at=(700, 300), radius=1):
    image = np.full((size, size, 3), BACKGROUND, np.uint8)
    y, x = at
    image[y - radius : y + radius + 1, x - radius : x + radius + 1] = 255
    return image


def test_tiled_map_finds_small_defect_that_resizing_misses():
    image = _part_with_defect()
    cal = Calibration(
        image_threshold=0.1, pixel_threshold=0.1, image_min=0.0, image_max=0.2,
        pixel_min=0.0, pixel_max=0.2, source="false_alarm_rate", pixel_source="false_alarm_rate",
    )  # fmt: skip
    common = dict(calibration=cal, score_fn=max_score)
    tiled = Detector(deviation_model, 64, tile_size=64, tile_overlap=16, **common)(image)
    resized = Detector(deviation_model, 64, **common)(image)

    expected = np.abs(image.astype(np.float64) / 255 - BACKGROUND / 255).mean(-1)
    np.testing.assert_allclose(tiled.anomaly_map[0], expected, atol=1e-6)  # exact stitching
    assert np.unravel_index(np.argmax(tiled.anomaly_map[0]), (1024, 1024)) == (699, 299)
    assert tiled.score[0] == pytest.approx(127 / 255, abs=1e-6)
    assert tiled.is_anomalous[0] and tiled.defect_mask[0].sum() == 9
    assert tiled.defect_mask[0][699:702, 299:302].all()

    # Resizing 1024 -> 64 averages the 3x3 defect away: it stays far below the threshold.
    assert resized.anomaly_map[0].max() < 0.05
    assert not resized.is_anomalous[0] and not resized.defect_mask[0].any()


def test_overlap_stitching_has_no_seams_on_constant_image():
    image = np.full((3, 200, 176, 3), 0.25, np.float32)
    detector = Detector(deviation_model, 32, tile_size=32, tile_overlap=12, score_fn=max_score)
    maps = detector(image).anomaly_map
    np.testing.assert_allclose(maps, abs(0.25 - BACKGROUND / 255), rtol=1e-6)


@pytest.fixture(scope="module")
def small_draem():
    model = sspcab_jax.Draem(recon_width=8, disc_width=8)
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    return model, variables


def test_one_tile_image_matches_untiled(small_draem):
    model, variables = small_draem
    image = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    untiled = Detector.from_flax(model, variables, None, 32)(image)
    tiled = Detector.from_flax(model, variables, None, 32, tile_size=32, tile_overlap=8)(image)
    np.testing.assert_allclose(tiled.anomaly_map, untiled.anomaly_map, atol=1e-6)
    np.testing.assert_allclose(tiled.score, untiled.score, atol=1e-6)


def test_tiled_draem_runs_all_tiles_in_one_call(small_draem):
    model, variables = small_draem
    traces = []

    def model_fn(images):
        traces.append(images.shape)
        _, logits = model.apply(variables, images, train=False)
        amap = sspcab_jax.anomaly_map(logits)
        return amap, sspcab_jax.image_score(amap)

    score_fn = functools.partial(sspcab_jax.image_score, mode="mean_filter")
    detector = Detector(model_fn, 32, tile_size=32, tile_overlap=8, score_fn=score_fn)
    calls = []
    jitted = detector._tiled
    detector._tiled = lambda bound, x: calls.append(x.shape) or jitted(bound, x)
    images = np.random.default_rng(1).random((2, 80, 72, 3)).astype(np.float32)
    first = detector(images)
    second = detector(images)
    # 3 x 3 tiles per image, 18 tiles: one jitted call per batch, the network traced once.
    assert calls == [(2, 80, 72, 3)] * 2
    assert len(traces) == 1 and traces[0][1:] == (32, 32, 3)
    np.testing.assert_array_equal(first.anomaly_map, second.anomaly_map)
    assert first.anomaly_map.shape == (2, 80, 72)
    # The image score follows the model's rule on the stitched map.
    np.testing.assert_allclose(first.score, score_fn(jnp.asarray(first.anomaly_map)), atol=1e-6)


def test_scaled_tiles_and_small_images():
    detector = Detector(deviation_model, 32, tile_size=64, tile_overlap=16, score_fn=max_score)
    constant = np.full((200, 150, 3), 0.75, np.float32)
    out = detector(constant)
    assert out.anomaly_map.shape == (1, 200, 150)
    np.testing.assert_allclose(out.anomaly_map, abs(0.75 - BACKGROUND / 255), rtol=1e-5)
    # An image smaller than a tile is resized to the model input, as without tiling.
    small = np.random.default_rng(2).random((40, 50, 3)).astype(np.float32)
    untiled = Detector(deviation_model, 32, score_fn=max_score)(small)
    np.testing.assert_array_equal(detector(small).anomaly_map, untiled.anomaly_map)


def test_tiling_arguments_are_checked():
    with pytest.raises(ValueError, match="score_fn"):
        Detector(deviation_model, 32, tile_size=32)
    with pytest.raises(ValueError, match="tile_overlap"):
        Detector(deviation_model, 32, tile_size=32, tile_overlap=32, score_fn=max_score)
