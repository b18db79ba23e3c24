"""Writes a PNG grid of DRAEM synthesis samples: clean image | mask | augmented image.

    python -m train.show_synthesis --out=grid.png [--num=4] [--size=128] [--seed=0]

Normal images and the anomaly-source pool are scikit-image's bundled photographs (textures
brick, grass, gravel as normal images; those plus colour photographs as sources), so it runs
offline. One row per sample.
"""

from collections.abc import Sequence

import jax
import numpy as np
from absl import flags
from PIL import Image

from sspcab_jax.data.bundled_textures import load_bundled_picture
from sspcab_jax.synthesis import SynthesisConfig, synthesize
from train import cli

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


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.show_synthesis``."""
    del argv
    fv = flag_values
    flags.DEFINE_string("out", None, "PNG file to write.", flag_values=fv)
    flags.DEFINE_integer("num", 4, "Number of samples (rows).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("size", 128, "Image side in pixels.", lower_bound=8, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=fv)
    flags.mark_flags_as_required(["out"], flag_values=fv)


def main(argv: Sequence[str]) -> str:
    """Command entry: ``main(["show_synthesis", "--out=grid.png"])``; returns the path."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    normal = np.stack([load_bundled_picture(n, args.size) for n in _NORMAL])
    sources = np.stack([load_bundled_picture(n, args.size) for n in _NORMAL + _EXTRA_SOURCES])
    images = normal[np.arange(args.num) % len(normal)]
    # Anomalies in every row make the grid informative; the training default is 0.5.
    config = SynthesisConfig(clean_prob=0.0)
    outputs = jax.jit(lambda k, x, s: synthesize(k, x, s, config=config))(
        jax.random.key(args.seed), images, sources
    )
    Image.fromarray(make_grid(jax.device_get(outputs))).save(args.out)
    print(args.out)
    return args.out


if __name__ == "__main__":
    cli.run(main)
