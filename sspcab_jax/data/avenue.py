"""CUHK Avenue: training and test videos, frame labels and pixel masks.

Two layouts are read (``root`` may be the folder holding them or the layout folder itself):

* official::

      <root>/Avenue Dataset/training_videos/01.avi .. 16.avi
      <root>/Avenue Dataset/testing_videos/01.avi .. 21.avi
      <root>/ground_truth_demo/testing_label_mask/1_label.mat .. 21_label.mat

  each ``.mat`` holds ``volLabel``, a 1 x N cell of H x W masks; frame label = any(mask > 0).
* Liu-format JPG mirror::

      <root>/avenue/training/frames/01/0000.jpg ..
      <root>/avenue/testing/frames/01/0000.jpg ..
      <root>/avenue/avenue.mat        key ``gt``: per video, 2 x K 1-based inclusive intervals

  (frame labels only; no pixel masks).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import scipy.io

from sspcab_jax.data.images import DatasetNotFoundError, Size, list_images
from sspcab_jax.data.video_io import VIDEO_EXTENSIONS, Video

AVENUE_INSTRUCTIONS = """\
Download CUHK Avenue from http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html
(Avenue_Dataset.zip and ground_truth_demo.zip) and unzip both into one folder ROOT:
  ROOT/Avenue Dataset/training_videos/01.avi .. 16.avi
  ROOT/Avenue Dataset/testing_videos/01.avi .. 21.avi
  ROOT/ground_truth_demo/testing_label_mask/1_label.mat .. 21_label.mat
The Liu-format JPG mirror is also accepted: ROOT/avenue/{training,testing}/frames/<NN>/0000.jpg
with ROOT/avenue/avenue.mat.
"""


def _missing(what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{what}\n{AVENUE_INSTRUCTIONS}")


@functools.lru_cache(maxsize=2)
def _vol_label(path: str) -> np.ndarray:
    """``volLabel`` of a ``<n>_label.mat`` as a boolean ``[T, H, W]`` array."""
    cells = scipy.io.loadmat(path)["volLabel"].reshape(-1)
    return np.stack([np.asarray(c) > 0 for c in cells])


def _official(root: Path, split: str, size, cache_dir) -> list[Video] | None:
    base = next(
        (d for d in (root / "Avenue Dataset", root) if (d / "training_videos").is_dir()), None
    )
    if base is None:
        return None
    folder = base / f"{'training' if split == 'train' else 'testing'}_videos"
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not paths:
        raise _missing(f"No videos in {folder}.")
    gt_dir = None
    if split == "test":
        candidates = [
            d / "ground_truth_demo" / "testing_label_mask" for d in (root, base.parent, base)
        ]
        gt_dir = next((d for d in candidates if d.is_dir()), None)
        if gt_dir is None:
            raise _missing(f"Test labels not found (looked for {candidates[0]}).")
    videos = []
    for path in paths:
        labels = masks = None
        if gt_dir is not None:
            # Label files drop the leading zero of the video name: 01.avi -> 1_label.mat.
            mat = gt_dir / f"{int(path.stem)}_label.mat"
            if not mat.is_file():
                raise _missing(f"Label file {mat} for {path} is missing.")
            volume = _vol_label(str(mat))
            labels = volume.reshape(len(volume), -1).any(axis=1).astype(np.int64)
            masks = functools.partial(_vol_label, str(mat))
        videos.append(
            Video(path.stem, path=path, labels=labels, masks=masks, size=size, cache_dir=cache_dir)
        )
    return videos


def _liu(root: Path, split: str, size) -> list[Video] | None:
    base = next((d for d in (root / "avenue", root) if (d / "training" / "frames").is_dir()), None)
    if base is None:
        return None
    folder = base / ("training" if split == "train" else "testing") / "frames"
    dirs = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []
    if not dirs:
        raise _missing(f"No frame folders in {folder}.")
    intervals = None
    if split == "test":
        mat = base / "avenue.mat"
        if not mat.is_file():
            raise _missing(f"Label file {mat} is missing.")
        intervals = scipy.io.loadmat(str(mat))["gt"].reshape(-1)
        if len(intervals) != len(dirs):
            raise ValueError(f"{mat} labels {len(intervals)} videos but {folder} has {len(dirs)}.")
    videos = []
    for i, d in enumerate(dirs):
        frames = list_images(d)
        labels = None
        if intervals is not None:
            labels = np.zeros(len(frames), np.int64)
            events = np.asarray(intervals[i]).reshape(2, -1)
            for start, end in events.T:
                labels[int(start) - 1 : int(end)] = 1
        videos.append(Video(d.name, frame_paths=frames, labels=labels, size=size))
    return videos


def avenue_videos(
    root: str | os.PathLike,
    split: str,
    *,
    size: Size | None = None,
    cache_dir: str | os.PathLike | None = None,
    check: bool = True,
) -> list[Video]:
    """Lists the Avenue videos of a split.

    Args:
      root: folder holding either layout (see module docstring).
      split: "train" or "test".
      size: output frame ``(height, width)``; None keeps 360 x 640.
      cache_dir: decoded-video cache for ``.avi`` files (recommended for training).
      check: compare label and frame counts now (decodes each ``.avi`` once).

    Returns:
      Videos sorted by name; test videos carry ``labels`` ``[T]`` (and pixel masks in the
      official layout).

    Raises:
      DatasetNotFoundError: neither layout found (message has the download instructions).
    """
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
    root = Path(root)
    if not root.is_dir():
        raise _missing(f"Avenue root folder {root} does not exist.")
    videos = _official(root, split, size, cache_dir)
    if videos is None:
        videos = _liu(root, split, size)
    if videos is None:
        raise _missing(f"No Avenue layout found under {root}.")
    if check:
        for video in videos:
            video.check()
    return videos
