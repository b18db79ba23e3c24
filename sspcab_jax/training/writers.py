"""Metric output a person expects: JSON lines and TensorBoard event files in the workdir."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any


class MetricWriter:
    """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard events in ``<workdir>/tb``.

    Only the writing process (process 0 in a multi-host run) should create one.

    Args:
      workdir: the run's directory.
    """

    def __init__(self, workdir: str | pathlib.Path):
        from tensorboardX import SummaryWriter

        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.workdir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        self._tb = SummaryWriter(str(self.workdir / "tb"))

    def write(self, step: int, scalars: dict[str, Any], prefix: str = "train") -> None:
        """Append one record: ``{"step": step, "<prefix>/<name>": value, ...}``."""
        values = {f"{prefix}/{k}": float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **_json_safe(values)}) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            self._tb.add_scalar(name, value, int(step))
        self._tb.flush()

    def close(self) -> None:
        """Flush and close both outputs."""
        self._jsonl.close()
        self._tb.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_safe(values: dict[str, float]) -> dict[str, float | None]:
    # JSON has no NaN/inf: write null so any JSON reader can load the file.
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}
