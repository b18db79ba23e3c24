"""Video access shared by the Avenue and ShanghaiTech readers.

A :class:`Video` is either a folder of frame images (random access is natural) or an encoded
video file decoded with imageio's ffmpeg plugin (imageio-ffmpeg ships its own binary). Decoding
a file is sequential, so for shuffled training from ``.avi`` pass ``cache_dir``: each video is
decoded once, at the requested size, to ``<cache_dir>/<name>_<H>x<W>.npy`` and memory-mapped.
Without a cache the last two decoded videos are kept in memory, which suits in-order testing.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from sspcab_jax.data.images import (
    CorruptImageError,
    MaskMismatchError,
    Size,
    as_hw,
    read_image,
    resize_image,
    resize_mask,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mov", ".mkv")


def _decode_error(path, error: Exception) -> CorruptImageError:
    # ffmpeg's messages carry its whole stderr (banner, build flags): keep the first line.
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CorruptImageError(f"Cannot decode video {path}: {first}")


def video_info(path: str | os.PathLike) -> tuple[float, int | None]:
    """``(frames per second, estimated frame count or None)`` from a video file's header.

    The count is ``duration * fps`` as the container announces it, an estimate (good enough for
    a progress bar, not for allocating frames).

    Raises:
      CorruptImageError: ffmpeg cannot open the file.
    """
    try:
        reader = imageio.get_reader(os.fspath(path), format="ffmpeg")
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()
    except (OSError, RuntimeError, ValueError) as error:
        raise _decode_error(path, error) from error
    fps = float(meta.get("fps") or 25.0)
    duration = meta.get("duration")
    estimate = round(duration * fps) if duration and np.isfinite(duration) else None
    return fps, estimate


def iter_video(
    path: str | os.PathLike, chunk_size: int, *, size: Size | None = None
) -> Iterator[np.ndarray]:
    """Decodes a video file in order, ``chunk_size`` frames at a time.

    Only one chunk is held in memory, so videos of any length can be streamed.

    Args:
      path: video file.
      chunk_size: frames per yielded array (the last one may hold fewer).
      size: optional output ``(height, width)`` (bilinear).

    Yields:
      ``uint8 [n, H, W, 3]`` with ``1 <= n <= chunk_size``.

    Raises:
      CorruptImageError: ffmpeg cannot open the file, or fails part-way (raised after the
        chunks decoded before the failure were yielded).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    try:
        reader = imageio.get_reader(os.fspath(path), format="ffmpeg")
    except (OSError, RuntimeError, ValueError) as error:
        raise _decode_error(path, error) from error
    try:
        chunk: list[np.ndarray] = []
        frames = iter(reader)
        while True:
            try:
                frame = next(frames, None)
            except (OSError, RuntimeError, ValueError) as error:
                raise _decode_error(path, error) from error
            if frame is not None:
                rgb = frame[..., :3]
                chunk.append(rgb if size is None else resize_image(rgb, size))
            if chunk and (frame is None or len(chunk) == chunk_size):
                yield np.stack(chunk).astype(np.uint8)
                chunk = []
            if frame is None:
                return
    finally:
        reader.close()


def read_video(path: str | os.PathLike, *, size: Size | None = None) -> np.ndarray:
    """Decodes every frame of a video file.

    Args:
      path: video file.
      size: optional output ``(height, width)`` (bilinear).

    Returns:
      ``uint8 [T, H, W, 3]``.

    Raises:
      CorruptImageError: ffmpeg cannot decode the file.
    """
    chunks = list(iter_video(path, 256, size=size))
    if not chunks:
        raise CorruptImageError(f"Video {path} has no frames.")
    return np.concatenate(chunks)


class VideoWriter:
    """Encodes frames one chunk at a time (a context manager; closing finishes the file).

    Args:
      path: output file; the container follows its extension (``.avi``, ``.mp4``, ...).
      fps: frames per second.
      macro_block_size: frame sides are padded up to a multiple of this (16 suits most
        codecs; 2, the least libx264 accepts, keeps sizes nearly exact).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 25, macro_block_size: int = 16):
        self.path = os.fspath(path)
        self._writer = imageio.get_writer(
            self.path, format="ffmpeg", fps=fps, macro_block_size=macro_block_size
        )

    def append(self, frames: np.ndarray) -> None:
        """Appends ``uint8 [T, H, W, 3]`` frames (or one ``[H, W, 3]`` frame)."""
        frames = np.asarray(frames, np.uint8)
        for frame in frames[None] if frames.ndim == 3 else frames:
            self._writer.append_data(frame)

    def close(self) -> None:
        """Finishes the file."""
        self._writer.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | os.PathLike, frames: np.ndarray, *, fps: int = 25) -> None:
    """Encodes ``uint8 [T, H, W, 3]`` frames (H, W multiples of 16 avoid rescaling)."""
    with VideoWriter(path, fps=fps) as writer:
        writer.append(frames)


@functools.lru_cache(maxsize=2)
def _decoded(path: str, size: tuple[int, int] | None) -> np.ndarray:
    return read_video(path, size=size)


class Video:
    """One video with optional frame labels and pixel masks.

    Args:
      name: video identifier, e.g. "01" or "01_0014".
      path: encoded video file (exclusive with ``frame_paths``).
      frame_paths: one image per frame, in order.
      labels: ``[T]`` 0/1 per frame, or None (training videos).
      masks: zero-argument loader of the ``[T, H, W]`` pixel masks (loaded only when a mask is
        asked for; may return a memory map), or None.
      size: output ``(height, width)`` of frames and masks; None keeps the original size.
      cache_dir: where decoded video files are cached as ``.npy`` (see module docstring).
    """

    def __init__(
        self,
        name: str,
        *,
        path: str | os.PathLike | None = None,
        frame_paths: Sequence[str | os.PathLike] | None = None,
        labels: np.ndarray | None = None,
        masks: Callable[[], np.ndarray] | None = None,
        size: Size | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        if (path is None) == (frame_paths is None):
            raise ValueError("Give exactly one of path and frame_paths.")
        self.name = name
        self.path = None if path is None else os.fspath(path)
        self.frame_paths = None if frame_paths is None else [os.fspath(p) for p in frame_paths]
        self.labels = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
        self._masks = masks
        self.size = None if size is None else as_hw(size)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._length: int | None = None

    def __repr__(self) -> str:
        return f"Video({self.name!r}, source={self.path or 'frames'})"

    def _array(self) -> np.ndarray:
        """All frames of an encoded video, ``[T, H, W, 3]`` (possibly a memory map)."""
        if self.cache_dir is None:
            return _decoded(self.path, self.size)
        height, width = self.size or (0, 0)
        cached = self.cache_dir / f"{self.name}_{height}x{width}.npy"
        if not cached.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npy")
            np.save(tmp, read_video(self.path, size=self.size))
            os.replace(tmp, cached)  # atomic: concurrent readers never see a partial file
        return np.load(cached, mmap_mode="r")

    def __len__(self) -> int:
        if self._length is None:
            if self.frame_paths is not None:
                self._length = len(self.frame_paths)
            else:
                self._length = int(self._array().shape[0])
        return self._length

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` as ``uint8 [stop - start, H, W, 3]``."""
        if self.frame_paths is not None:
            out = []
            for path in self.frame_paths[start:stop]:
                image = read_image(path)
                out.append(image if self.size is None else resize_image(image, self.size))
            return np.stack(out)
        return np.asarray(self._array()[start:stop])

    def mask(self, index: int, frame_shape: tuple[int, int]) -> np.ndarray:
        """Pixel mask of frame ``index`` as ``uint8 [H, W, 1]`` in {0, 255} (zeros if none).

        Args:
          index: frame index.
          frame_shape: ``(H, W)`` of the returned frames, to which the mask must correspond.

        Raises:
          MaskMismatchError: the masks cover fewer frames than ``index``, or (when frames keep
            their original size) the mask's size differs from the frame's. With ``size`` set,
            masks are resized (nearest) to the frame size.
        """
        if self._masks is None:
            return np.zeros(frame_shape + (1,), np.uint8)
        masks = self._masks()
        if index >= len(masks):
            raise MaskMismatchError(
                f"Video {self.name}: pixel masks cover {len(masks)} frames, frame {index} asked."
            )
        mask = (np.asarray(masks[index]) > 0).astype(np.uint8)[..., None] * 255
        if mask.shape[:2] != frame_shape:
            if self.size is None:
                raise MaskMismatchError(
                    f"Video {self.name}: mask size {mask.shape[:2]} differs from frame size "
                    f"{frame_shape}."
                )
            mask = resize_mask(mask, frame_shape)
        return mask

    def check(self) -> None:
        """Checks label count against frame count; raises ValueError naming the video."""
        if self.labels is not None and len(self.labels) != len(self):
            raise ValueError(
                f"Video {self.name}: {len(self.labels)} frame labels for {len(self)} frames; "
                "labels and frames come from different dataset versions."
            )
        if self.frame_paths is not None and self.frame_paths:
            try:
                read_image(self.frame_paths[0])
            except CorruptImageError as error:
                raise CorruptImageError(f"{error} (video {self.name}).") from error


class ClipSource(Sequence):
    """Random-access source of frames or clips of consecutive frames over a list of videos.

    Each element is a dict:

    * ``image``: ``uint8 [H, W, 3]`` (``clip_length`` None) or ``[T, H, W, 3]``;
    * ``mask``: ``uint8 [H, W, 1]``, pixel mask of the last frame (zeros without masks);
    * ``label``: ``int64``, label of the last frame (0 for unlabelled training videos);
    * ``frame_labels``: ``int64 [T]`` (clips only);
    * ``video``: video name (``str``); ``frame_index``: ``int64`` index of the last frame.

    Scoring the last frame of each clip matches future-frame prediction (clip = T - 1 inputs
    plus the target); the first ``T - 1`` frames of each video then get no score of their own.

    Args:
      videos: videos to draw from (their ``size`` sets the frame size).
      clip_length: frames per clip ``T``, or None for single frames.
      stride: step between the first frames of consecutive clips.
    """

    def __init__(self, videos: Sequence[Video], *, clip_length: int | None = None, stride: int = 1):
        if clip_length is not None and clip_length < 1:
            raise ValueError(f"clip_length must be >= 1 or None, got {clip_length}.")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}.")
        self.videos = list(videos)
        self.clip_length = clip_length
        span = clip_length or 1
        self.index = [
            (v, start)
            for v, video in enumerate(self.videos)
            for start in range(0, len(video) - span + 1, stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        v, start = self.index[index]
        video = self.videos[v]
        span = self.clip_length or 1
        frames = video.frames(start, start + span)
        last = start + span - 1
        labels = video.labels
        example = {
            "image": frames if self.clip_length else frames[0],
            "mask": video.mask(last, frames.shape[1:3]),
            "label": np.int64(0 if labels is None else labels[last]),
            "video": video.name,
            "frame_index": np.int64(last),
        }
        if self.clip_length:
            example["frame_labels"] = (
                np.zeros(span, np.int64) if labels is None else labels[start : start + span]
            )
        return example
