"""A held-out check: textures and defect kinds that no recipe was tuned on.

    python -m benchmarks.heldout --root /tmp/heldout            # writes the tree, baseline table
    python -m train.main --config=configs/draem_demo.py --workdir=/tmp/heldout_moon \\
        --config.data.dataset=folder --config.data.train_dir=/tmp/heldout/moon/train \\
        --config.data.test_dir=/tmp/heldout/moon/test \\
        --config.data.mask_dir=/tmp/heldout/moon/ground_truth

Normal images are random crops of two scikit-image photographs that neither the embedded
dataset (brick, grass, gravel) nor the bundled anomaly sources (those three plus coffee,
chelsea, astronaut, rocket) use: ``moon`` (a grey crater field) and ``ihc`` (a colour
immunohistochemistry slide). Test images carry defect kinds that neither the DRAEM synthesis
(Perlin-shaped pastes of other textures) nor the embedded generator (bright or dark curves, pits,
flat hard-edged stains, foreign polygons, swirls) produce:

* ``discolour``: a smooth Gaussian colour shift with soft edges; the mask is where the shift is
  at least half its peak;
* ``blur``: an elliptical patch whose detail is lost (Gaussian blur, sigma 2 px at 64 px);
* ``line``: a thin straight line painted in a colour of the image itself (its darkest or
  brightest tenth).

The tree has the MVTec layout (``<root>/<category>/{train/good, test/<kind>,
ground_truth/<kind>/<stem>_mask.png}``), read with ``data.dataset='folder'`` as above. It is
for evaluating a finished recipe once: nothing here is used to choose a recipe.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage import draw, exposure

HELDOUT_CATEGORIES: tuple[str, ...] = ("moon", "ihc")
HELDOUT_DEFECTS: tuple[str, ...] = ("discolour", "blur", "line")

_PICTURES = {"moon": skdata.moon, "ihc": skdata.immunohistochemistry}


def _picture(name: str) -> np.ndarray:
    """The photograph as float32 [H, W, 3] in [0, 1] (grey ones repeated on the channels).

    The grey moon is histogram-equalised first: its grain spans only a few grey levels, too
    faint at 64 px for any defect to show.
    """
    image = _PICTURES[name]()
    if image.ndim == 2:
        image = exposure.equalize_hist(image)[..., None].repeat(3, axis=-1)
    else:
        image = image[..., :3] / 255.0
    return image.astype(np.float32)


def _crop(picture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random flipped crop of ``2 * size`` pixels, block-averaged to [size, size, 3]."""
    span = 2 * size
    top = rng.integers(0, picture.shape[0] - span + 1)
    left = rng.integers(0, picture.shape[1] - span + 1)
    patch = picture[top : top + span, left : left + span]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))


def _as_mask(coordinates, image: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], bool)
    mask[coordinates] = True
    return mask


def _discolour(image: np.ndarray, rng: np.random.Generator):
    size = image.shape[0]
    center = rng.uniform(0.25, 0.75, 2) * size
    sigma = rng.uniform(0.08, 0.14) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    field = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2))
    direction = rng.normal(size=3)
    shift = rng.uniform(0.2, 0.35) * direction / np.linalg.norm(direction)
    return image + field[..., None] * shift, field >= 0.5


def _blur(image: np.ndarray, rng: np.random.Generator):
    size = image.shape[0]
    center = rng.uniform(0.25, 0.75, 2) * size
    radii = rng.uniform(0.1, 0.18, 2) * size
    mask = _as_mask(draw.ellipse(*center, *radii, shape=image.shape[:2]), image)
    blurred = ndimage.gaussian_filter(image, sigma=(size / 32, size / 32, 0), mode="reflect")
    return np.where(mask[..., None], blurred, image), mask


def _line(image: np.ndarray, rng: np.random.Generator):
    size = image.shape[0]
    start, end = rng.uniform(0.1, 0.9, (2, 2)) * size
    while np.hypot(*(end - start)) < 0.4 * size:  # long enough to be a scratch
        end = rng.uniform(0.1, 0.9, 2) * size
    rows, cols = draw.line(*start.astype(int), *end.astype(int))
    mask = _as_mask((rows, cols), image)
    if rng.random() < 0.5:
        mask = ndimage.binary_dilation(mask)
    luma = image.mean(axis=-1)
    level = np.quantile(luma, 0.1 if rng.random() < 0.5 else 0.9)
    colour = image[np.unravel_index(np.abs(luma - level).argmin(), luma.shape)]
    return np.where(mask[..., None], colour, image), mask


_DEFECTS: dict[str, Callable] = {"discolour": _discolour, "blur": _blur, "line": _line}


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_heldout(
    root: str | os.PathLike,
    *,
    categories: Sequence[str] = HELDOUT_CATEGORIES,
    image_size: int = 64,
    num_train: int = 60,
    num_test_good: int = 10,
    num_test_per_defect: int = 10,
    seed: int = 0,
    picture: Callable[[str], np.ndarray] | None = None,
    defects: dict[str, Callable] | None = None,
) -> Path:
    """Writes the held-out tree of PNG images and masks (MVTec layout); no network.

    Args:
      root: output folder; ``<root>/<category>/{train,test,ground_truth}`` are created.
      categories: subset of :data:`HELDOUT_CATEGORIES` (or of the names ``picture`` knows).
      image_size: side of the square images, even, in [16, 256].
      num_train: normal training images per category.
      num_test_good: normal test images per category.
      num_test_per_defect: test images per defect kind and category.
      seed: everything written is a deterministic function of the arguments.
      picture: category name -> float32 [H, W, 3] photograph in [0, 1], H, W >= 2 * image_size
        (default: this set's photographs; another held-out set passes its own).
      defects: kind -> ``f(clean [S, S, 3], rng) -> (image, mask [S, S] bool)`` (default:
        this set's kinds).

    Returns:
      ``root`` as a Path.
    """
    if picture is None:
        unknown = [c for c in categories if c not in HELDOUT_CATEGORIES]
        if unknown:
            raise ValueError(f"Unknown held-out categories {unknown}; use {HELDOUT_CATEGORIES}.")
    picture = picture or _picture
    defects = defects or _DEFECTS
    if not 16 <= image_size <= 256 or image_size % 2:
        raise ValueError(f"image_size must be even and in [16, 256], got {image_size}.")
    root = Path(root)
    for index, category in enumerate(categories):
        source = picture(category)
        rng = np.random.default_rng([seed, index])
        base = root / category

        def write(image, path):
            _save(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), path)

        for i in range(num_train):
            write(_crop(source, image_size, rng), base / "train" / "good" / f"{i:03d}.png")
        for i in range(num_test_good):
            write(_crop(source, image_size, rng), base / "test" / "good" / f"{i:03d}.png")
        for kind, defect in defects.items():
            for i in range(num_test_per_defect):
                image, mask = defect(_crop(source, image_size, rng), rng)
                write(image, base / "test" / kind / f"{i:03d}.png")
                mask_path = base / "ground_truth" / kind / f"{i:03d}_mask.png"
                _save(mask.astype(np.uint8) * 255, mask_path)
    return root


def write_named_set(root, name: str, known: Sequence[str], picture, defects, **kwargs) -> Path:
    """:func:`write_heldout` of another held-out set, refusing categories it does not have.

    Args:
      root: output folder.
      name: the set's name, for the error message.
      known: the set's category names (the default ``categories``).
      picture: its category name -> photograph function.
      defects: its defect functions.
      **kwargs: other :func:`write_heldout` arguments.
    """
    kwargs.setdefault("categories", known)
    unknown = [c for c in kwargs["categories"] if c not in known]
    if unknown:
        raise ValueError(f"Unknown {name} held-out categories {unknown}; use {tuple(known)}.")
    return write_heldout(root, picture=picture, defects=defects, **kwargs)


def write_and_score(description: str, write, categories: Sequence[str], name: str) -> None:
    """The command of a held-out set: writes its tree (``--root``), prints the baseline on it."""
    from benchmarks import local_baseline

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default="", help="where to write the tree (default: temporary)")
    parser.add_argument("--image_size", type=int, default=64)
    args = parser.parse_args()
    root = write(args.root or tempfile.mkdtemp(prefix=f"{name}_"), image_size=args.image_size)
    print(f"{name} held-out tree: {root}")
    local_baseline.run("folder", str(root), categories, args.image_size)


def main() -> None:
    write_and_score(__doc__.split("\n")[0], write_heldout, HELDOUT_CATEGORIES, "first")


if __name__ == "__main__":
    main()
