"""Scores a folder of images with an exported detector (JAX, NumPy and Pillow only).

python examples/serve_exported.py detector.jaxexport path/to/images
"""

import pathlib
import sys

import numpy as np
from PIL import Image

import sspcab_jax.export


def main(artifact: str, folder: str) -> None:
    """Prints ``file score verdict`` for every image in ``folder``."""
    detector = sspcab_jax.export.load(artifact)
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    for path in sorted(pathlib.Path(folder).iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        result = detector(pixels)
        verdict = (
            ""
            if result.is_anomalous is None
            else ("anomalous" if result.is_anomalous[0] else "normal")
        )
        print(f"{path.name}\t{result.score[0]:.6f}\t{verdict}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/serve_exported.py ARTIFACT.jaxexport IMAGE_FOLDER")
    main(sys.argv[1], sys.argv[2])
