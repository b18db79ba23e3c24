"""The anomaly-source textures the train step sees at each step: fixed, or a refreshed bank.

A :class:`~sspcab_jax.data.TextureBank` is read in a background thread one bank ahead, so a
refresh costs the step only the host-to-device copy, unless reading a bank takes longer than
``refresh_every`` steps (``benchmarks/texture_bank.py`` measures both).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import numpy as np

from sspcab_jax.data.texture_bank import TextureBank


class SourceFeed:
    """``feed.at(step)``: the device textures of ``step`` (the same array between refreshes).

    Args:
      place: puts a host array where the step expects it (``ParallelRunner.put_replicated``).
      sources: host textures ``[S, H, W, 3]``, None (Perlin textures), or a bank.
    """

    def __init__(self, place: Any, sources: np.ndarray | TextureBank | None):
        self.place, self.bank = place, sources if isinstance(sources, TextureBank) else None
        self._device = None if self.bank else place(sources)
        self._refresh: int | None = None
        self._ahead: tuple[int, concurrent.futures.Future] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if self.bank else None

    def at(self, step: int) -> Any:
        """The textures of ``step``; loads bank ``step // refresh_every`` when it changes."""
        if self.bank is None:
            return self._device
        refresh = self.bank.refresh_of(step)
        if refresh != self._refresh:
            if self._ahead is not None and self._ahead[0] == refresh:
                host = self._ahead[1].result()  # read in the background (or wait for it)
            else:
                host = self.bank.load(refresh)  # first step, or a jump (resume)
            self._device, self._refresh = self.place(host), refresh
            self._ahead = (refresh + 1, self._pool.submit(self.bank.load, refresh + 1))
        return self._device

    def close(self) -> None:
        """Stop the background reader (a bank being read is finished first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SourceFeed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
