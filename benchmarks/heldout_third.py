"""A third held-out check, written after the second was looked at: new surfaces, new defects.

    python -m benchmarks.heldout_third --root /tmp/third          # writes the tree, baseline table
    python -m train.main --config=configs/draem_demo.py --workdir=/tmp/third_wood \\
        --config.data.dataset=folder --config.data.train_dir=/tmp/third/wood/train \\
        --config.data.test_dir=/tmp/third/wood/test \\
        --config.data.mask_dir=/tmp/third/wood/ground_truth

The first two held-out sets (:mod:`benchmarks.heldout`, :mod:`benchmarks.heldout_fresh`) were
looked at while the recipe and the detector were chosen, so they are development data now. This
one judges a detector chosen without it. Normal images are random crops of

* ``wood``: a plank's grain drawn procedurally (fixed seed): growth rings around an axis far
  outside the picture, bent by smooth noise, dark latewood and light earlywood, tinted brown;
* ``hubble``: scikit-image's Hubble deep-field photograph (galaxies on a dark sky).

Test images carry defect kinds that neither the DRAEM synthesis (Perlin-shaped pastes of other
textures or of the image itself, rotated or zoomed), the embedded generator (curves, pits, flat
stains, foreign polygons, swirls), nor the first two held-out sets (colour shifts, blurred
patches, straight lines, creases, salt-and-pepper speckle, faded patches) produce:

* ``pixelate``: an elliptical patch shown as 4x4-pixel blocks (at 64 px) of its own mean colour;
* ``bulge``: a disc magnified 1.6-2x at its centre, easing back to the surroundings at its rim
  (a dent or blister); the mask is where at least a quarter of the magnification applies;
* ``negative``: a soft-edged patch whose colours are inverted (70-100 % of the way); the mask
  is where at least half of the inversion applies.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage import draw

from benchmarks import heldout

THIRD_CATEGORIES: tuple[str, ...] = ("wood", "hubble")
THIRD_DEFECTS: tuple[str, ...] = ("pixelate", "bulge", "negative")


@functools.cache
def wood_picture(size: int = 1024, ring: float = 24.0, seed: int = 0) -> np.ndarray:
    """A plank's grain, float32 [size, size, 3] in [0, 1]; deterministic in its arguments."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    # The tree's axis lies far to the left, so the rings cross the plank as gentle arcs.
    radius = np.hypot(yy - size / 2, xx + 3 * size)
    bend = ndimage.gaussian_filter(rng.normal(size=(size, size)), 40, mode="wrap") * 1500
    phase = (radius + bend) / ring % 1.0
    # Earlywood is light and wide, latewood a narrow dark band at the end of each ring.
    value = 0.75 - 0.35 * np.clip((phase - 0.7) / 0.3, 0, 1) ** 2
    fibres = ndimage.gaussian_filter(rng.normal(size=(size, size)), (8, 0.7), mode="wrap")
    value = value + 0.6 * fibres + 0.015 * rng.normal(size=(size, size))
    tint = np.array([0.92, 0.66, 0.42])
    return np.clip(value[..., None] * tint + 0.04, 0, 1).astype(np.float32)


@functools.cache
def hubble_picture() -> np.ndarray:
    """The Hubble deep-field photograph, float32 [H, W, 3] in [0, 1]."""
    return (skdata.hubble_deep_field()[..., :3] / 255.0).astype(np.float32)


def third_picture(name: str) -> np.ndarray:
    """The normal surface of a third-set category, float32 [H, W, 3] in [0, 1]."""
    if name == "wood":
        return wood_picture()
    if name == "hubble":
        return hubble_picture()
    raise ValueError(f"Unknown third held-out category {name!r}; use {THIRD_CATEGORIES}.")


def _ellipse(size: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    centre = rng.uniform(0.25, 0.75, 2) * size
    radii = rng.uniform(low, high, 2) * size
    mask = np.zeros((size, size), bool)
    mask[draw.ellipse(*centre, *radii, shape=(size, size))] = True
    return mask


def pixelate(image: np.ndarray, rng: np.random.Generator):
    """An ellipse shown as blocks of their mean colour; ([S, S, 3], ellipse mask [S, S])."""
    size = image.shape[0]
    block = max(2, size // 16)
    mask = _ellipse(size, rng, 0.1, 0.18)
    cells = size // block
    means = image[: cells * block, : cells * block].reshape(cells, block, cells, block, 3)
    blocky = means.mean(axis=(1, 3)).repeat(block, axis=0).repeat(block, axis=1)
    padded = np.pad(blocky, ((0, size - cells * block),) * 2 + ((0, 0),), mode="edge")
    return np.where(mask[..., None], padded, image), mask


def bulge(image: np.ndarray, rng: np.random.Generator):
    """A magnified disc easing to its rim; ([S, S, 3], mask [S, S] of >= 1/4 the magnifying)."""
    size = image.shape[0]
    centre = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.14, 0.22) * size
    magnification = rng.uniform(1.6, 2.0)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    r = np.hypot(dy, dx) / radius
    # Sampling at a scaled-down radius magnifies; the scale eases from 1/m at the centre to 1.
    scale = np.where(r < 1, 1 - (1 - 1 / magnification) * (1 - r**2) ** 2, 1.0)
    coords = [centre[0] + dy * scale, centre[1] + dx * scale]
    moved = np.stack(
        [ndimage.map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(3)],
        axis=-1,
    )
    return moved, scale <= 1 - 0.25 * (1 - 1 / magnification)


def negative(image: np.ndarray, rng: np.random.Generator):
    """Colours inverted in a soft patch; ([S, S, 3], mask [S, S] where >= half of it)."""
    size = image.shape[0]
    centre = rng.uniform(0.3, 0.7, 2) * size
    radii = rng.uniform(0.1, 0.16, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    radius = np.hypot((yy - centre[0]) / radii[0], (xx - centre[1]) / radii[1])
    weight = np.clip(2.0 * (1.0 - radius), 0.0, 1.0) * rng.uniform(0.7, 1.0)
    w = weight[..., None]
    return image * (1 - w) + (1 - image) * w, weight >= 0.5 * weight.max()


THIRD_DEFECT_FNS = {"pixelate": pixelate, "bulge": bulge, "negative": negative}


def write_third(root, **kwargs):
    """Writes the third held-out tree (MVTec layout); arguments as :func:`heldout.write_heldout`."""
    return heldout.write_named_set(
        root, "third", THIRD_CATEGORIES, third_picture, THIRD_DEFECT_FNS, **kwargs
    )


def main() -> None:
    heldout.write_and_score(__doc__.split("\n")[0], write_third, THIRD_CATEGORIES, "third")


if __name__ == "__main__":
    main()
