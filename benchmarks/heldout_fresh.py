"""A second held-out check, written after the first was looked at: new surfaces, new defects.

    python -m benchmarks.heldout_fresh --root /tmp/fresh          # writes the tree, baseline table
    python -m train.main --config=configs/draem_demo.py --workdir=/tmp/fresh_weave \\
        --config.data.dataset=folder --config.data.train_dir=/tmp/fresh/weave/train \\
        --config.data.test_dir=/tmp/fresh/weave/test \\
        --config.data.mask_dir=/tmp/fresh/weave/ground_truth

The first held-out set (:mod:`benchmarks.heldout`) was used to diagnose the recipe, so it is
development data now. This one is for judging a recipe chosen without it. Normal images are
random crops of

* ``weave``: a plain-weave fabric drawn procedurally (fixed seed): threads 10 px apart with a
  rounded profile, per-thread shade jitter and a smooth waviness, tinted beige;
* ``retina``: scikit-image's fundus photograph, inside the square inscribed in its disc.

Test images carry defect kinds that neither the DRAEM synthesis (Perlin-shaped pastes of other
textures or of the image itself, rotated or zoomed), nor the embedded generator (curves, pits,
flat stains, foreign polygons, swirls), nor the first held-out set (soft colour shifts, blurred
patches, straight lines of the image's own colour) produce:

* ``crease``: a straight fold across the image: the far side is displaced by 1-2 px along the
  fold's normal and a dark-bright ridge is shaded in; the mask is the shaded band;
* ``speckle``: salt-and-pepper noise on a third of the pixels of an ellipse (the mask);
* ``fade``: a worn patch whose contrast drops to 15-30 % about the image's mean colour, with a
  soft rim; the mask is where at least half of the fade applies.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage import draw

from benchmarks import heldout

FRESH_CATEGORIES: tuple[str, ...] = ("weave", "retina")
FRESH_DEFECTS: tuple[str, ...] = ("crease", "speckle", "fade")


@functools.cache
def weave_picture(size: int = 1024, period: int = 10, seed: int = 0) -> np.ndarray:
    """A plain-weave fabric, float32 [size, size, 3] in [0, 1]; deterministic in its arguments."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    # A smooth displacement field makes the threads wander a little, as real cloth does.
    wander = [
        ndimage.gaussian_filter(rng.normal(size=(size, size)), 24, mode="wrap") * 60
        for _ in range(2)
    ]
    yy, xx = yy + wander[0], xx + wander[1]
    warp_shade = 0.62 + 0.06 * rng.normal(size=size // period + 8)
    weft_shade = 0.50 + 0.06 * rng.normal(size=size // period + 8)
    col, row = np.floor(xx / period).astype(int), np.floor(yy / period).astype(int)
    warp = warp_shade[col % len(warp_shade)] * (0.55 + 0.45 * np.sin(np.pi * (xx / period % 1)))
    weft = weft_shade[row % len(weft_shade)] * (0.55 + 0.45 * np.sin(np.pi * (yy / period % 1)))
    value = np.where((row + col) % 2 == 0, warp, weft) + 0.02 * rng.normal(size=(size, size))
    tint = np.array([0.95, 0.82, 0.62])
    return np.clip(value[..., None] * tint + 0.08, 0, 1).astype(np.float32)


@functools.cache
def retina_picture() -> np.ndarray:
    """The fundus photograph inside its disc's inscribed square, float32 [S, S, 3] in [0, 1]."""
    image = skdata.retina()[..., :3] / 255.0
    size = image.shape[0]
    half = int(0.3 * size)  # the disc's radius is about 0.45 of the side: stay well inside it
    centre = size // 2
    return image[centre - half : centre + half, centre - half : centre + half].astype(np.float32)


def fresh_picture(name: str) -> np.ndarray:
    """The normal surface of a fresh category, float32 [H, W, 3] in [0, 1]."""
    if name == "weave":
        return weave_picture()
    if name == "retina":
        return retina_picture()
    raise ValueError(f"Unknown fresh held-out category {name!r}; use {FRESH_CATEGORIES}.")


def crease(image: np.ndarray, rng: np.random.Generator):
    """A straight fold: far side shifted 1-2 px, dark-bright ridge; ([S, S, 3], mask [S, S])."""
    size = image.shape[0]
    angle = rng.uniform(0, np.pi)
    normal = np.array([np.sin(angle), np.cos(angle)])
    point = rng.uniform(0.3, 0.7, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    distance = (yy - point[0]) * normal[0] + (xx - point[1]) * normal[1]
    sigma = size / 40
    # The far side moves along the normal through a smooth step as wide as the ridge.
    shift = rng.uniform(1.0, 2.0) * size / 64 / (1 + np.exp(-distance / sigma))
    coords = [yy - shift * normal[0], xx - shift * normal[1]]
    moved = np.stack(
        [ndimage.map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(3)],
        axis=-1,
    )
    ridge = (distance / sigma) * np.exp(0.5 - distance**2 / (2 * sigma**2))  # peak +-1 at +-sigma
    shading = 1 + rng.uniform(0.3, 0.45) * rng.choice([-1, 1]) * ridge
    return moved * shading[..., None], np.abs(distance) <= 2 * sigma


def speckle(image: np.ndarray, rng: np.random.Generator):
    """Salt and pepper on a third of an ellipse's pixels; ([S, S, 3], ellipse mask [S, S])."""
    size = image.shape[0]
    centre = rng.uniform(0.25, 0.75, 2) * size
    radii = rng.uniform(0.08, 0.15, 2) * size
    mask = heldout._as_mask(draw.ellipse(*centre, *radii, shape=image.shape[:2]), image)
    hit = mask & (rng.random(mask.shape) < 1 / 3)
    salt = rng.random(mask.shape) < 0.5
    return np.where(hit[..., None], salt[..., None].astype(np.float32), image), mask


def fade(image: np.ndarray, rng: np.random.Generator):
    """Contrast cut to 15-30 % in a soft patch; ([S, S, 3], mask [S, S] where >= half of it)."""
    size = image.shape[0]
    centre = rng.uniform(0.3, 0.7, 2) * size
    radii = rng.uniform(0.12, 0.2, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    radius = np.hypot((yy - centre[0]) / radii[0], (xx - centre[1]) / radii[1])
    weight = np.clip(2.0 * (1.0 - radius), 0.0, 1.0)  # 1 inside half the radius, 0 outside
    keep = rng.uniform(0.15, 0.3)
    mean = image.mean(axis=(0, 1))
    faded = mean + (image - mean) * keep
    w = weight[..., None]
    return image * (1 - w) + faded * w, weight >= 0.5


FRESH_DEFECT_FNS = {"crease": crease, "speckle": speckle, "fade": fade}


def write_fresh(root, **kwargs):
    """Writes the fresh held-out tree (MVTec layout); arguments as :func:`heldout.write_heldout`."""
    return heldout.write_named_set(
        root, "fresh", FRESH_CATEGORIES, fresh_picture, FRESH_DEFECT_FNS, **kwargs
    )


def main() -> None:
    heldout.write_and_score(__doc__.split("\n")[0], write_fresh, FRESH_CATEGORIES, "fresh")


if __name__ == "__main__":
    main()
