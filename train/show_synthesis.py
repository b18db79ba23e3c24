"""Writes a PNG grid of DRAEM synthesis samples: clean image | mask | augmented image.

    python -m train.show_synthesis --out=grid.png [--num=4] [--size=128] [--seed=0]

Normal images and the anomaly-source pool are scikit-image's bundled photographs (textures
brick, grass, gravel as normal images; those plus colour photographs as sources), so it runs
offline. One row per sample.
"""

import argparse
from collections.abc import Sequence

import jax
import numpy as np
from PIL import Image

from sspcab_jax.data.bundled_textures import load_bundled_picture
from sspcab_jax.synthesis import SynthesisConfig, synthesize

_NORMAL = ("brick", "grass", "gravel")
_EXTRA_SOURCES = ("coffee", "chelsea", "astronaut", "rocket")


def make_grid(outputs: dict[str, np.ndarray], pad: int = 2) -> np.ndarray:
    """Tiles synthesis outputs into one uint8 image.

    Args:
      outputs: 'image' [B, H, W, 3], 'mask' [B, H, W, 1], 'augmented' [B, H, W, 3].
      pad: white gap between tiles, in pixels.

    Returns:
      [B * (H + pad) + pad, 3 * (W + pad) + pad, 3] uint8 grid.
    """
    images, masks, augmented = outputs["image"], outputs["mask"], outputs["augmented"]
    batch, height, width, _ = images.shape
    grid = np.ones((batch * (height + pad) + pad, 3 * (width + pad) + pad, 3), np.float32)
    for row in range(batch):
        tiles = (images[row], np.repeat(masks[row], 3, axis=-1), augmented[row])
        top = pad + row * (height + pad)
        for col, tile in enumerate(tiles):
            left = pad + col * (width + pad)
            grid[top : top + height, left : left + width] = tile
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> str:
    """Parses flags, synthesises ``--num`` samples and writes the grid; returns the path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--num", type=int, default=4, help="number of samples (rows)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    normal = np.stack([load_bundled_picture(n, args.size) for n in _NORMAL])
    sources = np.stack([load_bundled_picture(n, args.size) for n in _NORMAL + _EXTRA_SOURCES])
    images = normal[np.arange(args.num) % len(normal)]
    # Anomalies in every row make the grid informative; the training default is 0.5.
    config = SynthesisConfig(clean_prob=0.0)
    outputs = jax.jit(lambda k, x, s: synthesize(k, x, s, config=config))(
        jax.random.key(args.seed), images, sources
    )
    Image.fromarray(make_grid(jax.device_get(outputs))).save(args.out)
    return args.out


if __name__ == "__main__":
    print(main())
