import numpy as np
import pytest
from PIL import Image

from sspcab_jax import viz


def _read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _tiny_mvtec(n: int = 2, size: int = 16):
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size, 3))
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[:, 4:9, 5:10] = 1
    maps_a = 0.5 * rng.random(masks.shape) + 0.3 * masks
    maps_b = 0.3 * rng.random(masks.shape) + 0.7 * masks
    return images, masks, maps_a, maps_b


def test_overlay_hand_values():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    anomaly_map = np.array([[0.0, 1.0], [0.0, 1.0]])
    out = viz.overlay(image, anomaly_map, alpha=1.0, cmap="gray")
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[:, 0], 0)
    np.testing.assert_array_equal(out[:, 1], 255)
    # alpha 0.5 over a white grayscale float image: (1 + 0) / 2 -> 128 on the low end of 'gray'.
    out = viz.overlay(np.ones((2, 2)), anomaly_map, alpha=0.5, cmap="gray")
    np.testing.assert_array_equal(out[:, 0], 128)
    np.testing.assert_array_equal(out[:, 1], 255)


def test_overlay_rejects_mismatched_map():
    with pytest.raises(ValueError, match="anomaly_map"):
        viz.overlay(np.zeros((4, 4, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="image"):
        viz.overlay(np.zeros((4, 4, 2)), np.zeros((4, 4)))


def test_outline_mask_paints_the_ring_of_a_square():
    image = np.zeros((5, 6, 3), np.uint8)
    mask = np.zeros((5, 6), bool)
    mask[1:4, 1:4] = True  # a 3x3 square: its 8 outer pixels form the outline
    mask[0, 5] = True  # on the image border: outlined too
    out = viz.outline_mask(image, mask, colour=(9, 8, 7))
    painted = np.all(out == (9, 8, 7), axis=-1)
    expected = mask.copy()
    expected[2, 2] = False
    np.testing.assert_array_equal(painted, expected)
    assert image.max() == 0  # the input is not modified
    with pytest.raises(ValueError, match="like the image"):
        viz.outline_mask(image, mask[:4])


@pytest.mark.parametrize("two_runs", [False, True])
def test_plot_anomaly_maps_png(tmp_path, two_runs):
    images, masks, maps_a, maps_b = _tiny_mvtec()
    runs = {"DRAEM": maps_a, "DRAEM+SSPCAB": maps_b} if two_runs else {"DRAEM": maps_a}
    path = viz.plot_anomaly_maps(images, masks, runs, tmp_path / "maps.png", panel_size=1.0, dpi=50)
    pixels = _read_png(path)
    cols = 2 + len(runs)
    assert pixels.shape == (2 * 50, cols * 50, 3)
    assert pixels.std() > 0  # something was drawn


def test_plot_anomaly_maps_rejects_bad_shapes(tmp_path):
    images, masks, maps_a, _ = _tiny_mvtec()
    with pytest.raises(ValueError, match="run 'x'"):
        viz.plot_anomaly_maps(images, masks, {"x": maps_a[:1]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="runs is empty"):
        viz.plot_anomaly_maps(images, masks, {}, tmp_path / "bad.png")


def test_plot_frame_scores_png(tmp_path):
    labels = np.zeros(60, dtype=np.uint8)
    labels[10:20] = labels[40:45] = 1
    t = np.arange(60)
    runs = {"baseline": 0.3 + 0.2 * np.sin(t / 5), "+SSPCAB": 0.2 + 0.6 * labels}
    path = viz.plot_frame_scores(
        runs, labels, tmp_path / "scores.png", title="video 10", figsize=(4, 2), dpi=60
    )
    pixels = _read_png(path)
    assert pixels.shape == (120, 240, 3)
    assert pixels.std() > 0
    assert viz._intervals(labels) == [(10, 20), (40, 45)]


def test_plot_frame_scores_rejects_mismatch(tmp_path):
    with pytest.raises(ValueError, match="run 'a'"):
        viz.plot_frame_scores({"a": np.zeros(5)}, np.zeros(6), tmp_path / "x.png")


def test_plot_roc_curves_png(tmp_path):
    images, masks, maps_a, maps_b = _tiny_mvtec(n=4)
    labels = np.array([0, 0, 1, 1])
    image = {
        "bottle": (np.array([0.1, 0.4, 0.35, 0.8]), labels),
        "cable": (maps_b.max((1, 2)), labels),
    }
    pixel = {"bottle": (maps_a, masks), "cable": (maps_b, masks)}
    path = viz.plot_roc_curves(
        image, tmp_path / "roc.png", pixel=pixel, panel_size=2.0, dpi=50, max_points=50
    )
    pixels = _read_png(path)
    assert pixels.shape == (100, 200, 3)
    assert pixels.std() > 0
    only_image = _read_png(viz.plot_roc_curves(image, tmp_path / "roc1.png", dpi=50))
    assert only_image.shape == (200, 200, 3)


def test_banner_fills_a_strip_and_leaves_the_rest():
    image = np.full((60, 90, 3), 7, np.uint8)
    out = viz.draw_banner(image, "ANOMALY 0.93", (200, 0, 0))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[10:], image[10:])  # strip: max(10, 60 / 10) rows
    strip = out[:10].reshape(-1, 3)
    background = (strip == (200, 0, 0)).all(axis=1)
    assert 0.4 < background.mean() < 0.95  # filled, with text drawn over part of it
    assert (strip[~background] > (200, 0, 0)).any(axis=1).all()  # white-ish text
    assert (out[:10, -3:] == (200, 0, 0)).all()  # a short text leaves the right end plain
    narrow = viz.draw_banner(np.zeros((120, 24, 3), np.uint8), "ANOMALY 0.93", (0, 0, 200))
    np.testing.assert_array_equal(narrow[12:], 0)  # text shrunk to fit, not spilling over
