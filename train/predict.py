"""Anomaly maps and scores of a trained run on any folder of images.

    python -m train.predict --workdir=<run> --images=<folder> --out=<folder>

Flags:
  --workdir    the training run's directory.
  --images     a folder of images of any size and format Pillow reads (.png, .jpg, ...).
  --out        output folder (created; files of the same name are replaced).
  --which      'best' (default) or 'latest' checkpoint.
  --recursive  also read the images in sub-folders (default: the folder's own files only).

Writes into ``--out``:
  ``scores.csv``    ``file,score`` per readable image (``file`` relative to ``--images``).
  ``overlays/``     one PNG per readable image: the anomaly map over the image, at the image's
                    original size. ``<name>.png``; ``<name>.<ext>.png`` when two inputs share
                    a name but not an extension.
  ``skipped.txt``   ``file<TAB>reason`` per file that could not be read (empty when none).

Each image is resized to the run's ``data.image_size`` for the model and its map is resized
back. DRAEM maps are probabilities and are coloured on the fixed scale [0, 1]; auto-encoder
maps (reconstruction errors, unbounded) on the min..max of the whole folder, so overlays of one
call are comparable with each other.
"""

from __future__ import annotations

import csv
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from absl import flags
from PIL import Image

from sspcab_jax import viz
from sspcab_jax.data import CorruptImageError, read_image
from sspcab_jax.data.images import IMAGE_EXTENSIONS, image_size
from sspcab_jax.training import evaluation
from sspcab_jax.training.restore import WHICH, load_run
from sspcab_jax.training.tasks import get_task
from train import cli

logger = logging.getLogger(__name__)


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.predict``."""
    del argv
    fv = flag_values
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=fv)
    flags.DEFINE_string("images", None, "Folder of images to score.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to use.", flag_values=fv)
    flags.DEFINE_bool("recursive", False, "Also read images in sub-folders.", flag_values=fv)
    flags.mark_flags_as_required(["workdir", "images", "out"], flag_values=fv)


class Prediction(NamedTuple):
    """What :func:`predict_folder` returns.

    Attributes:
        scores: ``{file relative to the folder: image score}``, in file order.
        skipped: ``[(file, reason)]`` of the files that were not read.
        out: The output folder.
    """

    scores: dict[str, float]
    skipped: list[tuple[str, str]]
    out: pathlib.Path


class _ImageFiles(Sequence):
    """Random-access source of ``{'image': uint8 [H, W, 3]}``, decoding on access."""

    def __init__(self, paths: Sequence[pathlib.Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        return {"image": read_image(self.paths[index])}


def list_files(folder: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
    """Sorted regular, non-hidden files of ``folder`` (and its sub-folders if ``recursive``).

    Raises:
        cli.CommandError: ``folder`` is not a directory or holds no file.
    """
    if not folder.is_dir():
        raise cli.CommandError(f"--images={folder} is not a folder: pass a folder of images.")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(
        p
        for p in candidates
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        more = "" if recursive else " (add --recursive to read its sub-folders)"
        raise cli.CommandError(f"--images={folder} holds no file{more}: put images in it.")
    return files


def readable_images(
    folder: pathlib.Path, files: Sequence[pathlib.Path]
) -> tuple[list[pathlib.Path], list[tuple[str, str]]]:
    """Splits ``files`` into decodable images and ``(file, reason)`` of the others."""
    images, skipped = [], []
    for path in files:
        name = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((name, f"not an image file (expected {', '.join(IMAGE_EXTENSIONS)})"))
            continue
        try:
            image_size(path)  # decodes the whole file, so truncated images show here
        except CorruptImageError as e:
            skipped.append((name, str(e)))
            continue
        images.append(path)
    return images, skipped


def overlay_names(relative: Sequence[pathlib.Path]) -> list[pathlib.Path]:
    """Output PNG paths: ``a/b.png`` for ``a/b.jpg``; ``a/b.jpg.png`` if that name is shared."""
    plain = [r.with_suffix(".png") for r in relative]
    counts: dict[pathlib.Path, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    pairs = zip(plain, relative, strict=True)
    return [p if counts[p] == 1 else r.with_name(r.name + ".png") for p, r in pairs]


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float ``[h, w]`` map to ``size = (H, W)``; returns ``[H, W]``."""
    if anomaly_map.shape == tuple(size):
        return anomaly_map
    height, width = size
    resized = Image.fromarray(np.asarray(anomaly_map, np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, np.float32)


def predict_folder(
    workdir: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    which: str = "best",
    recursive: bool = False,
) -> Prediction:
    """Scores every readable image of a folder and writes overlays, scores and skipped files.

    Args:
        workdir: The run directory.
        images: The folder of images.
        out: The output folder.
        which: ``'best'`` or ``'latest'`` checkpoint.
        recursive: Also read sub-folders (outputs mirror them).

    Returns:
        The scores and skipped files (see :class:`Prediction`).

    Raises:
        cli.CommandError: The folder is missing, empty, or holds no readable image.
        RunError: The run cannot be restored (see ``load_run``).
    """
    folder, out = pathlib.Path(images), pathlib.Path(out)
    files = list_files(folder, recursive)
    paths, skipped = readable_images(folder, files)
    if not paths:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
        raise cli.CommandError(
            f"--images={folder} holds no readable image ({len(skipped)} file(s) skipped: "
            f"{reasons}). Put PNG/JPEG images in it."
        )
    for name, why in skipped:
        logger.warning("skipped %s: %s", name, why)

    config, model, state, step = load_run(workdir, which)  # type: ignore[arg-type]
    task = get_task(config)
    logger.info("scoring %d image(s) with %s step %d of %s", len(paths), which, step, workdir)
    # evaluation.predict resizes each image to data.image_size, as at training and test time.
    outputs = evaluation.predict(task, model, state, _ImageFiles(paths))
    maps, scores = outputs["anomaly_map"], outputs["score"]
    # Bounded maps (probabilities) on their fixed range; others on this folder's range.
    vmin, vmax = task.anomaly_map_range or (float(maps.min()), float(maps.max()))

    relative = [p.relative_to(folder) for p in paths]
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for path, name, amap in zip(paths, overlay_names(relative), maps, strict=True):
        image = read_image(path)
        target = out / "overlays" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        full = resize_map(amap, image.shape[:2])
        Image.fromarray(viz.overlay(image, full, vmin=vmin, vmax=vmax)).save(target)

    result = {r.as_posix(): float(s) for r, s in zip(relative, scores, strict=True)}
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "score"])
        writer.writerows([name, repr(score)] for name, score in result.items())
    (out / "skipped.txt").write_text("".join(f"{name}\t{why}\n" for name, why in skipped))
    print(f"scored {len(result)} image(s) into {out} ({len(skipped)} skipped)")
    if skipped:
        print(f"skipped files are listed in {out / 'skipped.txt'}")
    return Prediction(result, skipped, out)


def main(argv: Sequence[str]) -> Prediction:
    """Command entry: ``main(["predict", "--workdir=<run>", "--images=<dir>", "--out=<dir>"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    return predict_folder(
        args.workdir, args.images, args.out, which=args.which, recursive=args.recursive
    )


if __name__ == "__main__":
    cli.run(main)
