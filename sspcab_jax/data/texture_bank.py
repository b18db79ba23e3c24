"""A bank of anomaly-source textures re-drawn from disk every N training steps.

DRAEM's ``data_loader.py`` reads a fresh texture for every sample from all 5,640 DTD images.
Keeping all of them on the device costs 4.4 GB as float32 at 256 x 256; the bank keeps
``bank_size`` of them and replaces the whole bank every ``refresh_every`` steps, so that over a
run every image is drawn while the device holds only ``bank_size``.

Which images bank ``r`` holds is a pure function of ``(seed, r)``: the images are walked
through an endless sequence of random permutations of all of them (permutation ``e`` drawn
from ``default_rng([seed, STREAM, e])``) and bank ``r`` takes positions
``r * bank_size ... (r + 1) * bank_size - 1``. So every image is in some bank within
``ceil(count / bank_size) + 1`` refreshes, and a run resumed at step ``s`` loads the very bank
an uninterrupted run had at ``s`` (bank ``s // refresh_every``).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence

import numpy as np

from sspcab_jax.data.images import Size, as_hw, list_images, read_image, resize_image

# Stream of the bank permutations, apart from the other uses of the run's seed.
STREAM = 11


def bank_indices(count: int, bank_size: int, refresh: int, seed: int) -> np.ndarray:
    """Indices (into ``count`` images) of bank number ``refresh``; ``[bank_size]`` int64.

    Args:
      count: number of images to draw from.
      bank_size: images per bank (may exceed ``count``: images then repeat).
      refresh: the bank's number, ``step // refresh_every``.
      seed: the run's seed.
    """
    if count < 1 or bank_size < 1 or refresh < 0:
        raise ValueError(
            f"need count >= 1, bank_size >= 1, refresh >= 0; got {count}, {bank_size}, {refresh}."
        )
    start = refresh * bank_size
    first, last = start // count, (start + bank_size - 1) // count
    stream = np.concatenate(
        [
            np.random.default_rng([seed, STREAM, e]).permutation(count)
            for e in range(first, last + 1)
        ]
    )
    offset = start - first * count
    return stream[offset : offset + bank_size]


class TextureBank:
    """Textures ``[bank_size, H, W, 3]`` float32 in [0, 1], re-drawn every ``refresh_every`` steps.

    Attributes:
      read: ``read(i) -> uint8 [H0, W0, 3]`` of image ``i`` (any size; resized here).
      count: number of images ``read`` serves.
      bank_size: images per bank.
      refresh_every: steps between refreshes.
      size: ``(H, W)`` of the textures.
      resize: ``'pil'`` or ``'cv2'`` (see :func:`~sspcab_jax.data.images.resize_image`).
      seed: the run's seed.
      read_threads: threads decoding one bank (image decoding releases the GIL); None: one
        per CPU core, at most 8.
    """

    def __init__(
        self,
        read: Callable[[int], np.ndarray],
        count: int,
        *,
        bank_size: int,
        refresh_every: int,
        size: Size,
        resize: str = "pil",
        seed: int = 0,
        read_threads: int | None = None,
    ):
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {refresh_every}.")
        self.read, self.count = read, int(count)
        self.bank_size, self.refresh_every = int(bank_size), int(refresh_every)
        self.size, self.resize, self.seed = as_hw(size), resize, int(seed)
        self.read_threads = max(1, int(read_threads or min(8, os.cpu_count() or 1)))
        bank_indices(self.count, self.bank_size, 0, self.seed)  # validates the sizes

    def refresh_of(self, step: int) -> int:
        """The bank in use at ``step``."""
        return int(step) // self.refresh_every

    def indices(self, refresh: int) -> np.ndarray:
        """Image indices of bank ``refresh`` (:func:`bank_indices`)."""
        return bank_indices(self.count, self.bank_size, refresh, self.seed)

    def load(self, refresh: int) -> np.ndarray:
        """Read, resize and stack bank ``refresh``: ``[bank_size, H, W, 3]`` float32 in [0, 1]."""

        def one(i: int) -> np.ndarray:
            return resize_image(self.read(int(i)), self.size, self.resize)

        with concurrent.futures.ThreadPoolExecutor(self.read_threads) as pool:
            images = list(pool.map(one, self.indices(refresh)))
        return np.stack(images).astype(np.float32) / 255.0


def folder_bank(folder: str | os.PathLike, **kwargs) -> TextureBank | None:
    """A :class:`TextureBank` over every image under ``folder`` (recursively), or None if empty.

    Args:
      folder: e.g. DTD's extracted ``images/`` folder.
      **kwargs: :class:`TextureBank` keywords (``bank_size``, ``refresh_every``, ``size``, ...).
    """
    paths = list_images(folder, recursive=True)
    if not paths:
        return None
    return TextureBank(lambda i: read_image(paths[i]), len(paths), **kwargs)


def tfds_bank(sources: Sequence[Sequence[dict]], **kwargs) -> TextureBank | None:
    """A :class:`TextureBank` over the concatenated TFDS ``dtd`` splits ``sources``, or None."""
    counts = [len(s) for s in sources]
    offsets = np.cumsum([0, *counts])
    if offsets[-1] == 0:
        return None

    def read(i: int) -> np.ndarray:
        which = int(np.searchsorted(offsets, i, side="right") - 1)
        return np.asarray(sources[which][int(i - offsets[which])]["image"], np.uint8)

    return TextureBank(read, int(offsets[-1]), **kwargs)
