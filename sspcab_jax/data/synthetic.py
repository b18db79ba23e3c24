"""The embedded dataset: a small MVTec-format tree written offline from real texture photographs.

Normal images are random crops (with flips) of the grayscale texture photographs that
scikit-image ships (``brick``, ``grass``, ``gravel``), tinted per category. Test images carry one
of five defect kinds, each drawn with an exact pixel mask:

* ``scratch``: a thin bright or dark curve;
* ``hole``: a dark elliptical pit with a shaded rim;
* ``stain``: a flat-coloured translucent blob with a lobed outline;
* ``foreign``: a straight-edged polygon filled with a different texture;
* ``warp``: a strong local swirl of the texture itself (no new colours at all); its mask holds
  the pixels the swirl visibly changed.

DRAEM's synthetic anomalies are Perlin-shaped blobs of augmented DTD textures, so none of these
kinds is produced verbatim during training; a good score on this set is a real generalisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage import draw

from sspcab_jax.data.atomic import ensure_tree

SYNTHETIC_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel")
DEFECT_KINDS: tuple[str, ...] = ("scratch", "hole", "stain", "foreign", "warp")
# Recorded in each tree's manifest: bump it whenever the written images change, so that trees
# written by another version are rebuilt instead of silently reused.
GENERATOR_VERSION = 2
# warp: a pixel belongs to the defect when its colour changed by at least 8/255 in a channel;
# smaller enclosed holes (the barely moving swirl centre) are filled.
_WARP_VISIBLE = 8 / 255
_WARP_HOLE_PIXELS = 9

# Per-category RGB tint applied to the grayscale photograph.
_TINTS = {
    "brick": (1.0, 0.62, 0.5),
    "grass": (0.62, 0.95, 0.5),
    "gravel": (0.92, 0.86, 0.76),
}


def _texture(name: str) -> np.ndarray:
    """The scikit-image photograph ``name`` as float32 [512, 512] in [0, 1]."""
    return getattr(skdata, name)().astype(np.float32) / 255.0


def _crop(texture: np.ndarray, size: int, rng: np.random.Generator, scale: int) -> np.ndarray:
    """A random flipped crop of ``size * scale`` pixels, downscaled to [size, size]."""
    span = size * scale
    top = rng.integers(0, texture.shape[0] - span + 1)
    left = rng.integers(0, texture.shape[1] - span + 1)
    patch = texture[top : top + span, left : left + span]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    # Block-average downscaling: cheap, and keeps the photograph's grain.
    return patch.reshape(size, scale, size, scale).mean(axis=(1, 3))


def _tint(gray: np.ndarray, tint: Sequence[float]) -> np.ndarray:
    return np.clip(gray[..., None] * np.asarray(tint, np.float32), 0.0, 1.0)


def _scratch(image, rng, others):
    size = image.shape[0]
    points = rng.uniform(0.15, 0.85, (3, 2)) * size
    rows, cols = draw.bezier_curve(
        *points[0].astype(int),
        *points[1].astype(int),
        *points[2].astype(int),
        weight=1.0,
        shape=image.shape[:2],
    )
    mask = np.zeros(image.shape[:2], bool)
    mask[rows, cols] = True
    mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, max(2, size // 48) + 1)))
    value = 0.95 if rng.random() < 0.5 else 0.05
    image[mask] = 0.15 * image[mask] + 0.85 * value
    return image, mask


def _hole(image, rng, others):
    size = image.shape[0]
    center = rng.uniform(0.25, 0.75, 2) * size
    radii = rng.uniform(0.06, 0.14, 2) * size
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    dist = np.sqrt(((yy - center[0]) / radii[0]) ** 2 + ((xx - center[1]) / radii[1]) ** 2)
    mask = dist <= 1.0
    depth = 0.04 + 0.2 * dist[mask] ** 2  # darker in the middle, lighter at the rim
    image[mask] = 0.1 * image[mask] + depth[:, None]
    return image, mask


def _stain(image, rng, others):
    size = image.shape[0]
    center = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.08, 0.16) * size
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    lobes = 1 + 0.25 * np.sin(rng.integers(3, 6) * angles + rng.uniform(0, 2 * np.pi))
    rows = center[0] + radius * lobes * np.sin(angles)
    cols = center[1] + radius * lobes * np.cos(angles)
    mask = draw.polygon2mask(image.shape[:2], np.stack([rows, cols], axis=1))
    color = rng.choice(np.array([[0.2, 0.25, 0.8], [0.45, 0.25, 0.05], [0.9, 0.85, 0.1]]))
    image[mask] = 0.45 * image[mask] + 0.55 * color
    return image, mask


def _foreign(image, rng, others):
    size = image.shape[0]
    name = others[rng.integers(len(others))]
    patch = _tint(_crop(_texture(name), size, rng, 2), _TINTS[name][::-1])
    center = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.12, 0.2) * size
    corners = int(rng.integers(3, 6))
    angles = (
        np.linspace(0, 2 * np.pi, corners, endpoint=False)
        + rng.uniform(0, 2 * np.pi)
        + rng.uniform(-0.3, 0.3, corners)
    )
    vertices = np.stack(
        [center[0] + radius * np.sin(angles), center[1] + radius * np.cos(angles)], axis=1
    )
    mask = draw.polygon2mask(image.shape[:2], vertices)
    if mask.sum() < 0.005 * size * size:  # degenerate sliver: fall back to a square
        half = int(radius * 0.7)
        mask[:] = False
        mask[
            int(center[0]) - half : int(center[0]) + half,
            int(center[1]) - half : int(center[1]) + half,
        ] = True
    image[mask] = patch[mask]
    return image, mask


def _warp(image, rng, others):
    size = image.shape[0]
    center = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.15, 0.25) * size
    # Strong enough that the swirl's shear streaks even an isotropic grain into visible arcs: at
    # 2-3.5 radians (generator version 1) a swirled grass or gravel patch was the same random
    # texture again, and no detector found it (docs/recipe.md).
    strength = rng.uniform(6.0, 10.0) * rng.choice([-1.0, 1.0])
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    rho = np.sqrt(dy**2 + dx**2)
    theta = strength * np.clip(1 - rho / radius, 0, 1) ** 2
    src_y = center[0] + dy * np.cos(theta) - dx * np.sin(theta)
    src_x = center[1] + dy * np.sin(theta) + dx * np.cos(theta)
    warped = np.stack(
        [
            ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1, mode="reflect")
            for c in range(3)
        ],
        axis=-1,
    )
    moved = np.hypot(src_y - yy, src_x - xx) >= 0.5
    # The mask is what visibly changed: a flat brick face swirled onto itself is not a defect.
    changed = np.abs(warped - image).max(axis=-1) >= _WARP_VISIBLE
    mask = ndimage.binary_closing(moved & changed) & moved
    holes, count = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    sizes = ndimage.sum_labels(np.ones_like(holes), holes, np.arange(1, count + 1))
    mask = mask | np.isin(holes, 1 + np.flatnonzero(sizes <= _WARP_HOLE_PIXELS))
    image = np.where(mask[..., None], warped, image)
    return image, mask


_DEFECTS: dict[str, Callable] = {
    "scratch": _scratch,
    "hole": _hole,
    "stain": _stain,
    "foreign": _foreign,
    "warp": _warp,
}


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def write_synthetic_mvtec(
    root: str | os.PathLike,
    *,
    categories: Sequence[str] = SYNTHETIC_CATEGORIES,
    defect_kinds: Sequence[str] = DEFECT_KINDS,
    image_size: int = 64,
    num_train: int = 60,
    num_test_good: int = 10,
    num_test_per_defect: int = 10,
    seed: int = 0,
) -> Path:
    """Writes a small MVTec-format dataset of PNG images and masks; no network.

    Args:
      root: output folder; ``<root>/<category>/{train,test,ground_truth}`` are created.
      categories: subset of :data:`SYNTHETIC_CATEGORIES` (texture photograph names).
      defect_kinds: subset of :data:`DEFECT_KINDS`.
      image_size: side of the square images, at most 256.
      num_train: normal training images per category.
      num_test_good: normal test images per category.
      num_test_per_defect: test images per defect kind and category.
      seed: everything written is a deterministic function of the arguments.

    Returns:
      ``root`` as a Path, to pass to :func:`sspcab_jax.data.mvtec.list_mvtec` with
      ``categories=None``.
    """
    unknown = [c for c in categories if c not in SYNTHETIC_CATEGORIES]
    if unknown:
        raise ValueError(f"Unknown synthetic categories {unknown}; use {SYNTHETIC_CATEGORIES}.")
    unknown = [k for k in defect_kinds if k not in DEFECT_KINDS]
    if unknown:
        raise ValueError(f"Unknown defect kinds {unknown}; use {DEFECT_KINDS}.")
    if not 8 <= image_size <= 256:
        raise ValueError(f"image_size must be in [8, 256], got {image_size}.")
    root = Path(root)
    scale = max(1, 128 // image_size)  # crops of >= 128 source pixels keep the texture scale
    for category_index, category in enumerate(categories):
        texture = _texture(category)
        others = [c for c in SYNTHETIC_CATEGORIES if c != category]
        rng = np.random.default_rng([seed, category_index])

        def normal(rng=rng, texture=texture, category=category):
            gray = _crop(texture, image_size, rng, scale) * rng.uniform(0.95, 1.05)
            return _tint(gray, _TINTS[category])

        base = root / category
        for i in range(num_train):
            _save(_to_uint8(normal()), base / "train" / "good" / f"{i:03d}.png")
        for i in range(num_test_good):
            _save(_to_uint8(normal()), base / "test" / "good" / f"{i:03d}.png")
        for kind in defect_kinds:
            for i in range(num_test_per_defect):
                image, mask = _DEFECTS[kind](normal(), rng, others)
                _save(_to_uint8(image), base / "test" / kind / f"{i:03d}.png")
                _save(
                    mask.astype(np.uint8) * 255, base / "ground_truth" / kind / f"{i:03d}_mask.png"
                )
    return root


def ensure_synthetic_mvtec(
    root: str | os.PathLike,
    category: str,
    *,
    defect_kinds: Sequence[str] = DEFECT_KINDS,
    image_size: int = 64,
    num_train: int = 60,
    num_test_good: int = 10,
    num_test_per_defect: int = 10,
    seed: int = 0,
) -> Path:
    """Writes ``<root>/<category>`` atomically, or verifies the complete copy already there.

    The category is written alone (as ``write_synthetic_mvtec(root, categories=(category,))``
    does), into a temporary folder renamed into place;
    ``<root>/.synthetic-<category>.manifest.json`` records every file's size and SHA-256. A
    partial, altered or differently generated tree is rebuilt with a warning saying what was
    wrong (see :mod:`sspcab_jax.data.atomic`).

    Args:
      root: folder holding one sub-folder per category.
      category: one of :data:`SYNTHETIC_CATEGORIES`.
      defect_kinds: subset of :data:`DEFECT_KINDS`.
      image_size: side of the square images, at most 256.
      num_train: normal training images.
      num_test_good: normal test images.
      num_test_per_defect: test images per defect kind.
      seed: everything written is a deterministic function of the arguments.

    Returns:
      ``root`` as a Path, for :func:`sspcab_jax.data.mvtec_source` with ``categories=None``.
    """
    if category not in SYNTHETIC_CATEGORIES:
        raise ValueError(f"Unknown synthetic category {category!r}; use {SYNTHETIC_CATEGORIES}.")
    kwargs = dict(
        defect_kinds=list(defect_kinds),
        image_size=image_size,
        num_train=num_train,
        num_test_good=num_test_good,
        num_test_per_defect=num_test_per_defect,
        seed=seed,
    )
    return ensure_tree(
        root,
        f"synthetic-{category}",
        (category,),
        {"category": category, **kwargs, "generator_version": GENERATOR_VERSION},
        lambda folder: write_synthetic_mvtec(folder, categories=(category,), **kwargs),
    )
