"""The training progress bar: steps, loss and steps/s of each log line."""

from __future__ import annotations

import time
from collections.abc import Iterator

from tqdm.auto import tqdm


class Progress:
    """The progress bar over a run's steps, with the loss and steps/s of each log line."""

    def __init__(self, start: int, total: int, *, enabled: bool):
        self.bar = tqdm(
            range(start, total),
            initial=start,
            total=total,
            disable=not enabled,
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        self._time, self._step = time.perf_counter(), start

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def log(self, done: int, loss: float) -> float:
        """Show ``loss``; returns the steps per second since the previous call."""
        now = time.perf_counter()
        rate = (done - self._step) / max(now - self._time, 1e-9)
        self._time, self._step = now, done
        self.bar.set_postfix(loss=f"{loss:.4f}", steps_s=f"{rate:.2f}")
        return rate

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
