"""ShanghaiTech Campus: training videos, test frames, frame labels and pixel masks.

Layout (``root`` may be the ``shanghaitech`` folder or its parent)::

    <root>/shanghaitech/training/videos/<scene>_<id>.avi      (or training/frames/<vid>/*.jpg)
    <root>/shanghaitech/testing/frames/<scene>_<id>/*.jpg
    <root>/shanghaitech/testing/test_frame_mask/<scene>_<id>.npy   [T] 0/1
    <root>/shanghaitech/testing/test_pixel_mask/<scene>_<id>.npy   [T, H, W] 0/1

If ``training/converted_videos`` exists (re-encoded copies some tools write because a few
original files are misread), it is preferred over ``training/videos``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from sspcab_jax.data.images import DatasetNotFoundError, Size, list_images
from sspcab_jax.data.video_io import VIDEO_EXTENSIONS, Video

SHANGHAITECH_INSTRUCTIONS = """\
Download ShanghaiTech Campus (https://svip-lab.github.io/dataset/campus_dataset.html) and
extract it so that ROOT/shanghaitech/ holds:
  training/videos/01_001.avi ..            (330 videos)
  testing/frames/01_0014/000.jpg ..         (107 videos)
  testing/test_frame_mask/01_0014.npy       per-frame 0/1 labels
  testing/test_pixel_mask/01_0014.npy       T x H x W pixel masks
"""


def _missing(what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{what}\n{SHANGHAITECH_INSTRUCTIONS}")


def _pixel_masks(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def shanghaitech_videos(
    root: str | os.PathLike,
    split: str,
    *,
    size: Size | None = None,
    cache_dir: str | os.PathLike | None = None,
    check: bool = True,
) -> list[Video]:
    """Lists the ShanghaiTech videos of a split.

    Args:
      root: ``shanghaitech`` folder or its parent.
      split: "train" or "test".
      size: output frame ``(height, width)``; None keeps 480 x 856.
      cache_dir: decoded-video cache for training ``.avi`` files.
      check: compare label and frame counts now (decodes each ``.avi`` once).

    Returns:
      Videos sorted by name; test videos carry ``labels`` ``[T]`` and, where the pixel-mask file
      exists, pixel masks (memory-mapped).

    Raises:
      DatasetNotFoundError: the folders or label files are missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
    root = Path(root)
    base = next((d for d in (root / "shanghaitech", root) if (d / "testing").is_dir()), None)
    if base is None:
        raise _missing(f"No ShanghaiTech layout found under {root}.")
    videos = []
    if split == "train":
        training = base / "training"
        for name in ("converted_videos", "videos"):
            folder = training / name
            paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
            if paths:
                videos = [Video(p.stem, path=p, size=size, cache_dir=cache_dir) for p in paths]
                break
        else:
            frame_dirs = sorted(p for p in (training / "frames").glob("*") if p.is_dir())
            videos = [Video(d.name, frame_paths=list_images(d), size=size) for d in frame_dirs]
        if not videos:
            raise _missing(f"No training videos in {training}/videos.")
    else:
        testing = base / "testing"
        frame_dirs = sorted(p for p in (testing / "frames").glob("*") if p.is_dir())
        if not frame_dirs:
            raise _missing(f"No test frame folders in {testing / 'frames'}.")
        for d in frame_dirs:
            label_file = testing / "test_frame_mask" / f"{d.name}.npy"
            if not label_file.is_file():
                raise _missing(f"Frame labels {label_file} for {d} are missing.")
            pixel_file = testing / "test_pixel_mask" / f"{d.name}.npy"
            masks = (
                functools.partial(_pixel_masks, str(pixel_file)) if pixel_file.is_file() else None
            )
            videos.append(
                Video(
                    d.name,
                    frame_paths=list_images(d),
                    labels=np.load(label_file).astype(np.int64),
                    masks=masks,
                    size=size,
                )
            )
    if check:
        for video in videos:
            video.check()
    return videos
