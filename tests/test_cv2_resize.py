"""OpenCV-equivalent bilinear resize and the official ground-truth mask rule."""

import pathlib

import numpy as np
import pytest

from sspcab_jax.data import images, pipeline
from sspcab_jax.data.cv2_resize import resize_linear_cv2

REFERENCE = pathlib.Path(__file__).parent / "data" / "opencv_reference.npz"


def half_pixel_bilinear(image, height, width):
    """Float bilinear with half-pixel centres, positions clamped to the image."""
    in_h, in_w = image.shape[:2]

    def axis(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    y0, y1, fy = axis(in_h, height)
    x0, x1, fx = axis(in_w, width)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


@pytest.mark.parametrize(
    "shape,out", [((90, 70, 3), (29, 41)), ((37, 53, 1), (13, 11)), ((20, 30, 3), (47, 61))]
)
def test_close_to_the_half_pixel_formula(shape, out):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    got = resize_linear_cv2(image, *out).astype(np.float64)
    # Fixed-point weights and truncations: never more than one level from the exact value.
    assert np.abs(got - half_pixel_bilinear(image, *out)).max() <= 1.0


def test_no_antialiasing_on_a_4x_downscale():
    # 4x: output pixel d reads source pixels 4d + 1 and 4d + 2 only, equally weighted.
    image = np.zeros((8, 8, 1), np.uint8)
    image[:, 1::4] = 200  # columns 1 and 5
    out = resize_linear_cv2(image, 2, 2)
    np.testing.assert_array_equal(out[..., 0], [[100, 100], [100, 100]])
    image[:, 1::4] = 0
    image[:, 0::4] = 200  # ignored by OpenCV's linear filter; PIL's would see it
    assert resize_linear_cv2(image, 2, 2).max() == 0
    assert images.resize_image(image, 2, method="pil").max() > 0


def test_equals_opencv_values():
    ref = np.load(REFERENCE)
    cases = sorted({k.rsplit("_", 1)[0] for k in ref.files if k.startswith("resize_")})
    assert len(cases) == 6
    for case in cases:
        source, expected = ref[f"{case}_in"], ref[f"{case}_out"]
        np.testing.assert_array_equal(resize_linear_cv2(source, *expected.shape[:2]), expected)
        np.testing.assert_array_equal(
            images.resize_image(source, expected.shape[:2], method="cv2"), expected
        )


def test_resize_method_is_checked():
    with pytest.raises(ValueError, match="resize method"):
        images.resize_image(np.zeros((4, 4, 3), np.uint8), 2, method="bicubic")
    with pytest.raises(ValueError, match="data.mask_rule"):
        pipeline.eval_dataset([], batch_size=1, image_size=2, mask_rule="bilinear")


def hand_mask():
    # One row 0 0 255 255 255 255, twice; resized to width 4 (scale 1.5).
    return np.array([[0, 0, 255, 255, 255, 255]] * 2, np.uint8)[..., None]


def test_official_mask_rule_by_hand():
    # Output column d reads source position 1.5 d + 0.25:
    #   d=0: 0.25 -> 0.75*0 + 0.25*0 = 0; d=1: 1.75 -> 0.25*0 + 0.75*255 = 191 (not 255);
    #   d=2: 3.25 -> 255; d=3: 4.75 -> 255. Only exact 255 counts.
    out = images.resize_mask(hand_mask(), (2, 4), rule="official")
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 255, 255]] * 2)
    # Nearest reads columns floor(1.5 d + 0.75) = 0, 2, 3, 5.
    out = images.resize_mask(hand_mask(), (2, 4), rule="nearest")
    np.testing.assert_array_equal(out[..., 0], [[0, 255, 255, 255]] * 2)


def test_pipeline_applies_the_rules():
    example = {"image": np.zeros((2, 6, 3), np.uint8), "mask": hand_mask(), "label": 1}
    official = pipeline.prepare_example(
        example, image_size=(2, 4), resize="cv2", mask_rule="official"
    )
    nearest = pipeline.prepare_example(example, image_size=(2, 4))
    np.testing.assert_array_equal(official["mask"][0, :, 0], [0, 0, 1, 1])
    np.testing.assert_array_equal(nearest["mask"][0, :, 0], [0, 1, 1, 1])
