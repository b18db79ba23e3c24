"""Verdicts, anomaly maps and scores of a trained run on images and video files.

    python -m train.predict --workdir=<run> --images=<folder> --out=<folder>

Flags:
  --workdir       the training run's directory.
  --images        a folder, a glob pattern ('parts/*.png', quoted), or one file: images of any
                  size and format Pillow reads (.png, .jpg, ...) and video files (.avi, .mp4,
                  .mov, .mkv, decoded with ffmpeg).
  --out           output folder (created; files of the same name are replaced).
  --which         'best' (default) or 'latest' checkpoint.
  --recursive     also read the files in sub-folders (default: the folder's own files only).
  --tile_size     cut images at least this large into tiles of this side (default: resize each
                  whole image to the model's input).
  --tile_overlap  pixels shared by neighbouring tiles.
  --batch_size    images (video frames) per network call (default 16).
  --write_video   also write each video annotated into ``overlays/`` (default: off).
  --noprogress    no progress bar (it is shown only when stderr is a terminal anyway).

Writes into ``--out``:
  ``predictions.csv``  ``file,score,normalized_score,is_anomalous,defect_pixels`` per readable
                    image and per video frame, in file order (``file`` relative to
                    ``--images``; a frame is ``<video>#frame=<index>``, index from 0; the last
                    three are empty when the run has no ``calibration.json``).
  ``overlays/``     one PNG per readable image: the anomaly map over the image, at the image's
                    original size, with the calibrated defect mask outlined in white.
                    ``<name>.png``; ``<name>.<ext>.png`` when two inputs share a name but not
                    an extension. With ``--write_video``, ``<video name>`` (same container)
                    annotated frame by frame (see ``train.predict_video``).
  ``skipped.txt``   ``file<TAB>reason`` per file that could not be read, or a video whose
                    decoding stopped early (its frames before the failure are scored); empty
                    when none.

Images go through ``sspcab_jax.Detector.from_workdir`` (the run's calibration, its
resize or tiling), and maps come back at each image's size. DRAEM maps are probabilities and
are coloured on the fixed scale [0, 1]; auto-encoder maps (reconstruction errors, unbounded)
on the min..max of all images of the call, so overlays of one call are comparable with each
other. Videos are streamed in chunks of ``--batch_size`` frames (see ``train.predict_video``).
A summary (images, frames, flagged, the threshold and where it comes from, the skipped files)
is printed at the end. Unreadable files are never fatal unless nothing is readable.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from absl import flags
from PIL import Image
from tqdm.auto import tqdm

from sspcab_jax.data import CorruptImageError, read_image
from sspcab_jax.detector import Detector
from sspcab_jax.training.restore import WHICH
from train import cli
from train.predict_inputs import Inputs, gather
from train.predict_outputs import fixed_map_range, overlay_picture, prediction_row, write_csv
from train.predict_video import predict_video

logger = logging.getLogger(__name__)

# Images decoded and scored together (bounds host memory on large folders).
CHUNK = 32
# Skipped files named one by one in the printed summary (all are in skipped.txt).
SUMMARY_SKIPPED = 10


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.predict``."""
    del argv
    fv = flag_values
    flags.DEFINE_string("workdir", None, "Directory of a training run.", flag_values=fv)
    flags.DEFINE_string(
        "images", None, "Folder, glob pattern, image or video file to score.", flag_values=fv
    )
    flags.DEFINE_string("out", None, "Output folder.", flag_values=fv)
    flags.DEFINE_enum("which", "best", WHICH, "Checkpoint to use.", flag_values=fv)
    flags.DEFINE_bool("recursive", False, "Also read files in sub-folders.", flag_values=fv)
    flags.DEFINE_integer(
        "tile_size", None, "Tile side in image pixels (default: resize).", flag_values=fv
    )
    flags.DEFINE_integer("tile_overlap", 0, "Pixels shared by neighbouring tiles.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "Images per network call.", flag_values=fv)
    flags.DEFINE_bool("write_video", False, "Write annotated videos.", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar on a terminal.", flag_values=fv)
    flags.mark_flags_as_required(["workdir", "images", "out"], flag_values=fv)


class Prediction(NamedTuple):
    """What :func:`predict_folder` returns.

    Attributes:
        scores: ``{file relative to the input root: raw score}`` (video frames as
            ``<video>#frame=<index>``), in file order.
        skipped: ``[(file, reason)]`` of the files not read (or, for videos, not to the end).
        out: The output folder.
        flagged: ``{file: is_anomalous}``, or None without a calibration.
    """

    scores: dict[str, float]
    skipped: list[tuple[str, str]]
    out: pathlib.Path
    flagged: dict[str, bool] | None = None


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
    batch_size: int = 16,
    write_video: bool = False,
    progress: bool = True,
) -> Prediction:
    """Scores every readable image and video frame; writes predictions, overlays, skipped files.

    Args:
        workdir: The run directory.
        images: A folder, a glob pattern, or one image or video file.
        out: The output folder.
        which: ``'best'`` or ``'latest'`` checkpoint.
        recursive: Also read sub-folders (outputs mirror them).
        tile_size: Tile side in image pixels, or None to resize whole images.
        tile_overlap: Pixels shared by neighbouring tiles.
        batch_size: Images (video frames) per network call.
        write_video: Also write the annotated videos.
        progress: Show progress bars (only when stderr is a terminal).

    Returns:
        The scores, verdicts and skipped files (see :class:`Prediction`).

    Raises:
        cli.CommandError: Nothing is found under ``images``, or nothing there is readable.
        RunError: The run cannot be restored (see ``load_run``).
    """
    inputs = gather(images, recursive)  # before the (slower) restore, so bad input fails fast
    detector = Detector.from_workdir(
        workdir, which=which, tile_size=tile_size, tile_overlap=tile_overlap, batch_size=batch_size
    )
    logger.info("scoring %s with %s step %d of %s", images, which, detector.step, workdir)
    return predict_inputs(detector, inputs, out, write_video=write_video, progress=progress)


def predict_inputs(
    detector: Detector,
    inputs: Inputs,
    out: str | os.PathLike[str],
    *,
    write_video: bool = False,
    progress: bool = True,
) -> Prediction:
    """:func:`predict_folder` with a ready detector and gathered inputs (see ``gather``)."""
    out = pathlib.Path(out)
    skipped = list(inputs.skipped)
    for name, why in skipped:
        logger.warning("skipped %s: %s", name, why)
    rows_of = _score_images(detector, inputs, out, progress)
    for path in inputs.videos:
        name = inputs.name(path)
        target = out / "overlays" / name if write_video else None
        try:
            video = predict_video(detector, path, name, annotated=target, progress=progress)
            rows_of[name], problem = video.rows, video.problem
        except CorruptImageError as error:  # it opened when listed, but not now
            problem = str(error)
        if problem is not None:
            logger.warning("video %s: %s", name, problem)
            skipped.append((name, problem))
    rows = [row for name in sorted(rows_of, key=lambda n: n.split("/")) for row in rows_of[name]]
    write_csv(out / "predictions.csv", rows)
    skipped.sort(key=lambda item: item[0].split("/"))
    (out / "skipped.txt").write_text("".join(f"{name}\t{why}\n" for name, why in skipped))
    calibrated = detector.calibration is not None and detector.calibration.available
    flagged = {r[0]: r[3] for r in rows} if calibrated else None
    _print_summary(detector, inputs, rows, flagged, skipped, out)
    return Prediction({r[0]: r[1] for r in rows}, skipped, out, flagged)


def _score_images(detector, inputs: Inputs, out: pathlib.Path, progress: bool) -> dict:
    """``{name: [row]}`` of every image; writes the overlays."""
    paths = inputs.images
    maps, masks, rows_of = [], [], {}
    quiet = True if not (progress and paths) else None  # None: only on a terminal
    bar = tqdm(total=len(paths), desc="images", unit="image", disable=quiet)
    with bar:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            result = detector([read_image(p) for p in chunk])
            for i, path in enumerate(chunk):
                maps.append(result.anomaly_map[i])
                masks.append(None if result.defect_mask is None else result.defect_mask[i])
                rows_of[inputs.name(path)] = [prediction_row(inputs.name(path), result, i)]
            bar.update(len(chunk))
    if paths:
        names = overlay_names([p.relative_to(inputs.root) for p in paths])
        _write_overlays(detector, paths, names, maps, masks, out)
    return rows_of


def _write_overlays(detector, paths, names, maps, masks, out: pathlib.Path) -> None:
    # Bounded maps (probabilities) on their fixed range; others on this call's range.
    low = min(float(m.min()) for m in maps)
    vmin, vmax = fixed_map_range(detector) or (low, max(float(m.max()) for m in maps))
    for path, name, amap, mask in zip(paths, names, maps, masks, strict=True):
        target = out / "overlays" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = overlay_picture(read_image(path), amap, mask, vmin, vmax)
        Image.fromarray(picture).save(target)


def _print_summary(detector, inputs: Inputs, rows, flagged, skipped, out: pathlib.Path) -> None:
    cal = detector.calibration
    frames = len(rows) - len(inputs.images)
    videos = f" and {frames} frame(s) of {len(inputs.videos)} video(s)" if inputs.videos else ""
    print(f"scored {len(inputs.images)} image(s){videos} into {out} ({len(skipped)} skipped)")
    if flagged is None:
        print(f"uncalibrated: no verdicts ({cal.note if cal is not None else 'no calibration'})")
    else:
        print(
            f"{sum(flagged.values())} of {len(rows)} flagged anomalous: score > "
            f"{cal.image_threshold:.6g} (calibration: {cal.source}, {cal.num_images} validation "
            f"images, false-alarm rate {cal.false_alarm_rate})"
        )
    if skipped:
        print(f"skipped (all listed in {out / 'skipped.txt'}):")
        for name, why in skipped[:SUMMARY_SKIPPED]:
            print(f"  {name}: {why}")
        if len(skipped) > SUMMARY_SKIPPED:
            print(f"  ... and {len(skipped) - SUMMARY_SKIPPED} more")


def main(argv: Sequence[str]) -> Prediction:
    """Command entry: ``main(["predict", "--workdir=<run>", "--images=<dir>", "--out=<dir>"])``."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    cli.require_writable(args.out, "--out")  # before any image is scored
    if args.batch_size < 1:
        raise cli.CommandError(f"--batch_size must be >= 1, got {args.batch_size}.")
    return predict_folder(
        args.workdir,
        args.images,
        args.out,
        which=args.which,
        recursive=args.recursive,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        batch_size=args.batch_size,
        write_video=args.write_video,
        progress=args.progress,
    )


if __name__ == "__main__":
    cli.run(main)
