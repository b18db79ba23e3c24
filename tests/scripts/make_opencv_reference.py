"""Writes tests/data/opencv_reference.npz: OpenCV values the tests compare against.

Run once with OpenCV installed (``pip install opencv-python-headless``); the tests themselves
never import cv2. Contents:

* ``resize_<i>_in`` / ``resize_<i>_out``: uint8 images and ``cv2.resize(..., INTER_LINEAR)``.
* ``colours``: uint8 [N, 3] RGB colours; ``to_<space>``: ``cv2.cvtColor`` of them (as a
  1 x N image) to each of imgaug's six brightness colour spaces.
* ``brightness_params``: float [K, 3] rows (mul, add, mul_first); ``brightness_<space>``:
  uint8 [K, N, 3], imgaug's ``MultiplyAndAddToBrightness`` steps for that space and those
  draws: cvtColor, uint8 Multiply table ``clip(v * float32(mul), 0, 255).astype(uint8)`` and
  Add table ``clip(v + round(add), 0, 255)`` on the brightness channel, cvtColor back.
"""

import pathlib
import sys

import cv2
import numpy as np

SPACES = {
    "YCrCb": (cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB, 0),
    "HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, 2),
    "HLS": (cv2.COLOR_RGB2HLS, cv2.COLOR_HLS2RGB, 1),
    "Lab": (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB, 0),
    "Luv": (cv2.COLOR_RGB2Luv, cv2.COLOR_Luv2RGB, 0),
    "YUV": (cv2.COLOR_RGB2YUV, cv2.COLOR_YUV2RGB, 0),
}
RESIZES = [  # (in_h, in_w, channels, out_h, out_w)
    (91, 67, 3, 29, 41),
    (37, 53, 1, 13, 11),
    (20, 30, 3, 47, 61),
    (64, 64, 3, 32, 32),
    (60, 50, 3, 17, 19),
    (56, 56, 3, 14, 14),
]
BRIGHTNESS = [(0.8, -30.0, 1.0), (1.2, 30.0, 0.0), (0.93, 17.0, 1.0), (1.07, -11.0, 0.0)]


def brightness(colours, space, mul, add, mul_first):
    forward, backward, channel = SPACES[space]
    converted = cv2.cvtColor(colours[None], forward)
    values = converted[..., channel]
    mul_table = np.clip(np.arange(256, dtype=np.float32) * np.float32(mul), 0, 255).astype(np.uint8)
    add_table = np.clip(np.arange(256) + int(np.round(add)), 0, 255).astype(np.uint8)
    values = add_table[mul_table[values]] if mul_first else mul_table[add_table[values]]
    converted[..., channel] = values
    return cv2.cvtColor(converted, backward)[0]


def main(out: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for i, (h, w, c, oh, ow) in enumerate(RESIZES):
        image = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        arrays[f"resize_{i}_in"] = image
        arrays[f"resize_{i}_out"] = cv2.resize(image, (ow, oh)).reshape(oh, ow, c)
    fixed = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]],
        np.uint8,
    )
    colours = np.concatenate([fixed, rng.integers(0, 256, (1018, 3), dtype=np.uint8)])
    arrays["colours"] = colours
    arrays["brightness_params"] = np.array(BRIGHTNESS, np.float32)
    for space, (forward, _, _) in SPACES.items():
        arrays[f"to_{space}"] = cv2.cvtColor(colours[None], forward)[0]
        arrays[f"brightness_{space}"] = np.stack(
            [brightness(colours, space, m, a, o) for m, a, o in BRIGHTNESS]
        )
    np.savez_compressed(out, opencv_version=cv2.__version__, **arrays)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/opencv_reference.npz"))
