"""An offline anomaly-source pool from the photographs bundled with scikit-image.

DRAEM pastes augmented DTD textures into normal images. Where DTD cannot be downloaded, crops of
scikit-image's bundled photographs (textures and colour pictures, no network) are a better
stand-in than plain Perlin noise: they carry colour, edges and structure.
"""

from __future__ import annotations

import numpy as np

from sspcab_jax.data.images import Size, as_hw

#: scikit-image pictures used by default: three textures and four colour photographs.
BUNDLED_PICTURES = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "rocket")


def load_bundled_picture(name: str, size: Size) -> np.ndarray:
    """One bundled picture, square-cropped and resized.

    Args:
      name: a function name of ``skimage.data`` (e.g. ``'brick'``).
      size: output ``(height, width)`` or an int.

    Returns:
      ``float32 [H, W, 3]`` in [0, 1] (grayscale pictures are repeated on the channels).
    """
    from skimage import data, transform

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    side = min(image.shape[:2])
    image = image[:side, :side, :3]
    return transform.resize(image, as_hw(size), anti_aliasing=True).astype(np.float32)


def bundled_texture_pool(
    size: Size, *, crops_per_picture: int = 6, names=BUNDLED_PICTURES, seed: int = 0
) -> np.ndarray:
    """Random crops of the bundled pictures, resized, as an anomaly-source pool.

    Args:
      size: output ``(height, width)`` or an int.
      crops_per_picture: crops taken from each picture (side 1/4 to 1/2 of the picture).
      names: ``skimage.data`` picture names.
      seed: crop positions are a deterministic function of the seed.

    Returns:
      ``float32 [len(names) * crops_per_picture, H, W, 3]`` in [0, 1].
    """
    from skimage import data, transform

    hw = as_hw(size)
    rng = np.random.default_rng(seed)
    pool = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        image = image[..., :3]
        height, width = image.shape[:2]
        for _ in range(crops_per_picture):
            side = int(min(height, width) * rng.uniform(0.25, 0.5))
            top = rng.integers(0, height - side + 1)
            left = rng.integers(0, width - side + 1)
            crop = image[top : top + side, left : left + side]
            pool.append(transform.resize(crop, hw, anti_aliasing=True).astype(np.float32))
    return np.stack(pool)
