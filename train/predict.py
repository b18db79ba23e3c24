"""Verdicts, anomaly maps and scores of a trained run on any folder of images.

    python -m train.predict --workdir=<run> --images=<folder> --out=<folder>

Flags:
  --workdir       the training run's directory.
  --images        a folder of images of any size and format Pillow reads (.png, .jpg, ...).
  --out           output folder (created; files of the same name are replaced).
  --which         'best' (default) or 'latest' checkpoint.
  --recursive     also read the images in sub-folders (default: the folder's own files only).
  --tile_size     cut images at least this large into tiles of this side (default: resize each
                  whole image to the model's input).
  --tile_overlap  pixels shared by neighbouring tiles.

Writes into ``--out``:
  ``predictions.csv``  ``file,score,normalized_score,is_anomalous,defect_pixels`` per readable
                    image (``file`` relative to ``--images``; the last three are empty when the
                    run has no ``calibration.json``).
  ``overlays/``     one PNG per readable image: the anomaly map over the image, at the image's
                    original size, with the calibrated defect mask outlined in white.
                    ``<name>.png``; ``<name>.<ext>.png`` when two inputs share a name but not
                    an extension.
  ``skipped.txt``   ``file<TAB>reason`` per file that could not be read (empty when none).

Images go through ``sspcab_jax.Detector.from_workdir`` (the run's calibration, its
resize or tiling), and maps come back at each image's size. DRAEM maps are probabilities and
are coloured on the fixed scale [0, 1]; auto-encoder maps (reconstruction errors, unbounded)
on the min..max of the whole folder, so overlays of one call are comparable with each other.
A summary (images, flagged, the threshold and where it comes from) is printed at the end.
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
from tqdm.auto import tqdm

from sspcab_jax import viz
from sspcab_jax.data import CorruptImageError, read_image
from sspcab_jax.data.images import IMAGE_EXTENSIONS, image_size
from sspcab_jax.detector import Detector
from sspcab_jax.training.restore import WHICH
from sspcab_jax.training.tasks import get_task
from train import cli

logger = logging.getLogger(__name__)

# Images decoded and scored together (bounds host memory on large folders).
CHUNK = 32


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.predict``."""
    del argv
    fv = flag_values
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=fv)
    flags.DEFINE_string("images", None, "Folder of images to score.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to use.", flag_values=fv)
    flags.DEFINE_bool("recursive", False, "Also read images in sub-folders.", flag_values=fv)
    flags.DEFINE_integer(
        "tile_size", None, "Tile side in image pixels (default: resize).", flag_values=fv
    )
    flags.DEFINE_integer("tile_overlap", 0, "Pixels shared by neighbouring tiles.", flag_values=fv)
    flags.mark_flags_as_required(["workdir", "images", "out"], flag_values=fv)


class Prediction(NamedTuple):
    """What :func:`predict_folder` returns.

    Attributes:
        scores: ``{file relative to the folder: raw image score}``, in file order.
        skipped: ``[(file, reason)]`` of the files that were not read.
        out: The output folder.
        flagged: ``{file: is_anomalous}``, or None without a calibration.
    """

    scores: dict[str, float]
    skipped: list[tuple[str, str]]
    out: pathlib.Path
    flagged: dict[str, bool] | None = None


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
    tile_size: int | None = None,
    tile_overlap: int = 0,
) -> Prediction:
    """Scores every readable image of a folder; writes predictions, overlays, skipped files.

    Args:
        workdir: The run directory.
        images: The folder of images.
        out: The output folder.
        which: ``'best'`` or ``'latest'`` checkpoint.
        recursive: Also read sub-folders (outputs mirror them).
        tile_size: Tile side in image pixels, or None to resize whole images.
        tile_overlap: Pixels shared by neighbouring tiles.

    Returns:
        The scores, verdicts and skipped files (see :class:`Prediction`).

    Raises:
        cli.CommandError: The folder is missing, empty, or holds no readable image.
        RunError: The run cannot be restored (see ``load_run``).
    """
    folder, out = pathlib.Path(images), pathlib.Path(out)
    paths, skipped = _readable_or_fail(folder, list_files(folder, recursive))
    detector = Detector.from_workdir(
        workdir, which=which, tile_size=tile_size, tile_overlap=tile_overlap
    )
    logger.info(
        "scoring %d image(s) with %s step %d of %s", len(paths), which, detector.step, workdir
    )
    maps, masks, rows = [], [], []
    relative = [p.relative_to(folder) for p in paths]
    for start in tqdm(range(0, len(paths), CHUNK), desc="predict", unit="chunk"):
        result = detector([read_image(p) for p in paths[start : start + CHUNK]])
        for i, name in enumerate(relative[start : start + CHUNK]):
            maps.append(result.anomaly_map[i])
            masks.append(None if result.defect_mask is None else result.defect_mask[i])
            rows.append(_row(name.as_posix(), result, i))
    _write_overlays(detector, paths, overlay_names(relative), maps, masks, out)
    _write_csv(out / "predictions.csv", rows)
    (out / "skipped.txt").write_text("".join(f"{name}\t{why}\n" for name, why in skipped))
    flagged = None if masks[0] is None else {r[0]: r[3] for r in rows}
    _print_summary(detector, rows, flagged, skipped, out)
    return Prediction({r[0]: r[1] for r in rows}, skipped, out, flagged)


def _readable_or_fail(folder, files):
    paths, skipped = readable_images(folder, files)
    if not paths:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
        raise cli.CommandError(
            f"--images={folder} holds no readable image ({len(skipped)} file(s) skipped: "
            f"{reasons}). Put PNG/JPEG images in it."
        )
    for name, why in skipped:
        logger.warning("skipped %s: %s", name, why)
    return paths, skipped


def _row(name: str, result, i: int) -> tuple:
    """``(file, score, normalized_score, is_anomalous, defect_pixels)``; None when uncalibrated."""
    if not result.calibrated:
        return (name, float(result.score[i]), None, None, None)
    return (
        name,
        float(result.score[i]),
        float(result.normalized_score[i]),
        bool(result.is_anomalous[i]),
        int(result.defect_mask[i].sum()),
    )


def _write_csv(path: pathlib.Path, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "score", "normalized_score", "is_anomalous", "defect_pixels"])
        for row in rows:
            writer.writerow(
                ["" if v is None else repr(v) if isinstance(v, float) else v for v in row]
            )


def _write_overlays(detector, paths, names, maps, masks, out: pathlib.Path) -> None:
    # Bounded maps (probabilities) on their fixed range; others on this folder's range.
    task = get_task(detector.config)
    low = min(float(m.min()) for m in maps)
    vmin, vmax = task.anomaly_map_range or (low, max(float(m.max()) for m in maps))
    for path, name, amap, mask in zip(paths, names, maps, masks, strict=True):
        target = out / "overlays" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = viz.overlay(read_image(path), amap, vmin=vmin, vmax=vmax)
        if mask is not None:
            picture = viz.outline_mask(picture, mask)
        Image.fromarray(picture).save(target)


def _print_summary(detector, rows, flagged, skipped, out: pathlib.Path) -> None:
    cal = detector.calibration
    print(f"scored {len(rows)} image(s) into {out} ({len(skipped)} skipped)")
    if flagged is None:
        print(f"uncalibrated: no verdicts ({cal.note})")
    else:
        print(
            f"{sum(flagged.values())} of {len(rows)} flagged anomalous: score > "
            f"{cal.image_threshold:.6g} (calibration: {cal.source}, {cal.num_images} validation "
            f"images, false-alarm rate {cal.false_alarm_rate})"
        )
    if skipped:
        print(f"skipped files are listed in {out / 'skipped.txt'}")


def main(argv: Sequence[str]) -> Prediction:
    """Command entry: ``main(["predict", "--workdir=<run>", "--images=<dir>", "--out=<dir>"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    cli.require_writable(args.out, "--out")  # before any image is scored
    return predict_folder(
        args.workdir,
        args.images,
        args.out,
        which=args.which,
        recursive=args.recursive,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
    )


if __name__ == "__main__":
    cli.run(main)
