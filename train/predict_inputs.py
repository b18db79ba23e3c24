"""What ``train.predict --images=...`` names: a folder, a glob pattern, an image or a video file.

Files are sorted and split into images (the extensions Pillow reads here), videos (those
ffmpeg reads here) and skipped files with the reason. Images are decoded whole and videos
opened once, so unreadable files are known before a model is restored; a video that fails
part-way is reported while it is scored.
"""

from __future__ import annotations

import glob
import os
import pathlib
from typing import NamedTuple

from sspcab_jax.data import VIDEO_EXTENSIONS, CorruptImageError, video_info
from sspcab_jax.data.images import IMAGE_EXTENSIONS, image_size
from train import cli


class Inputs(NamedTuple):
    """Readable inputs of one call.

    Attributes:
        root: The folder names are relative to (the folder, the file's folder, or the
            deepest folder holding every match of a pattern).
        images: Decodable image files, sorted.
        videos: Video files ffmpeg opens, sorted.
        skipped: ``[(name relative to root, reason)]`` of the other files.
    """

    root: pathlib.Path
    images: list[pathlib.Path]
    videos: list[pathlib.Path]
    skipped: list[tuple[str, str]]

    def name(self, path: pathlib.Path) -> str:
        """``path`` relative to :attr:`root`, with forward slashes."""
        return path.relative_to(self.root).as_posix()


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


def resolve(images: str | os.PathLike[str], recursive: bool) -> tuple[pathlib.Path, list]:
    """``(root, sorted files)`` named by ``--images`` (see the module docstring).

    Raises:
        cli.CommandError: Nothing exists under that name, or the folder / pattern holds no file.
    """
    path = pathlib.Path(images)
    if path.is_dir():
        return path, list_files(path, recursive)
    if path.is_file():
        return path.parent, [path]
    pattern = os.fspath(images)
    if glob.has_magic(pattern):
        files = sorted(
            p for p in map(pathlib.Path, glob.glob(pattern, recursive=True)) if p.is_file()
        )
        if not files:
            raise cli.CommandError(f"--images={pattern} matches no file: check the pattern.")
        root = pathlib.Path(os.path.commonpath([p.parent.absolute() for p in files]))
        return root, [p.absolute() for p in files]
    raise cli.CommandError(
        f"--images={path} is not a folder, a file or a glob pattern: pass a folder of images, an "
        "image or video file, or a pattern such as 'parts/*.png'."
    )


def _problem(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot be scored, or None."""
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_EXTENSIONS:
            image_size(path)  # decodes the whole file, so truncated images show here
        elif suffix in VIDEO_EXTENSIONS:
            video_info(path)
        else:
            return (
                f"not an image file (expected {', '.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({', '.join(VIDEO_EXTENSIONS)})"
            )
    except CorruptImageError as error:
        return str(error)
    return None


def gather(images: str | os.PathLike[str], recursive: bool = False) -> Inputs:
    """The readable images and videos named by ``--images``, and the skipped files.

    Raises:
        cli.CommandError: Nothing is named, or no named file is readable.
    """
    root, files = resolve(images, recursive)
    readable, skipped = [], []
    for path in files:
        problem = _problem(path)
        if problem is None:
            readable.append(path)
        else:
            skipped.append((path.relative_to(root).as_posix(), problem))
    if not readable:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
        raise cli.CommandError(
            f"--images={images} holds no readable image or video ({len(skipped)} file(s) "
            f"skipped: {reasons}). Pass PNG/JPEG images or .avi/.mp4 videos."
        )
    videos = [p for p in readable if p.suffix.lower() in VIDEO_EXTENSIONS]
    stills = [p for p in readable if p.suffix.lower() not in VIDEO_EXTENSIONS]
    return Inputs(root, stills, videos, skipped)
