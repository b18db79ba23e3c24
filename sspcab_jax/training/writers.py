"""Metric output a person expects: JSON lines and TensorBoard event files in the workdir."""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from typing import Any

logger = logging.getLogger(__name__)


class MetricWriter:
    """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard events in ``<workdir>/tb``.

    Only the writing process (process 0 in a multi-host run) should create one.

    A run resumed from its checkpoint at step ``resume_step`` repeats the steps after it, so
    the rows an interrupted run wrote past that step are dropped when the writer opens (and
    TensorBoard is told to purge its events from there): ``metrics.jsonl`` then holds each
    step once, as an uninterrupted run would. A row repeated at ``resume_step`` itself with
    the same keys (a finished run resumed and evaluated again) replaces the earlier one.

    Args:
      workdir: the run's directory.
      resume_step: the step the run resumes from; None for a fresh run (rows are appended).
    """

    def __init__(self, workdir: str | pathlib.Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / "metrics.jsonl"
        # Keys of the rows kept at the resume step: writing one of them again replaces it.
        self._at_resume: set[tuple[int, frozenset[str]]] = set()
        if resume_step is not None:
            self._at_resume = _truncate_after(self.path, int(resume_step))
        self._jsonl = open(self.path, "a")  # noqa: SIM115 - closed in close()
        purge = {} if resume_step is None else {"purge_step": int(resume_step) + 1}
        self._tb = SummaryWriter(str(self.workdir / "tb"), **purge)

    def write(self, step: int, scalars: dict[str, Any], prefix: str = "train") -> None:
        """Append one record: ``{"step": step, "<prefix>/<name>": value, ...}``."""
        values = {f"{prefix}/{k}": float(v) for k, v in scalars.items()}
        key = (int(step), frozenset(values))
        if key in self._at_resume:
            self._at_resume.discard(key)
            self._jsonl.close()
            _drop_last(self.path, key)
            self._jsonl = open(self.path, "a")  # noqa: SIM115 - closed in close()
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


def _truncate_after(path: pathlib.Path, step: int) -> set[tuple[int, frozenset[str]]]:
    """Drops rows past ``step`` and unreadable lines; returns the keys of the rows at ``step``."""
    if not path.is_file():
        return set()
    rows, unreadable = _read_rows(path)
    kept = [row for row in rows if row["step"] <= step]
    if len(kept) < len(rows) or unreadable:
        _write_rows(path, kept)
        logger.info(
            "%s: dropped %d row(s) past the resumed step %d and %d unreadable line(s)",
            path,
            len(rows) - len(kept),
            step,
            unreadable,
        )
    return {_row_key(row) for row in kept if row["step"] == step}


def _drop_last(path: pathlib.Path, key: tuple[int, frozenset[str]]) -> None:
    """Removes the last row with ``key`` (the one a repeated write replaces)."""
    rows, _ = _read_rows(path)
    del rows[max(i for i, row in enumerate(rows) if _row_key(row) == key)]
    _write_rows(path, rows)


def _read_rows(path: pathlib.Path) -> tuple[list[dict[str, Any]], int]:
    """``(rows, number of unreadable lines)``; a kill mid-write leaves a cut last line."""
    rows, unreadable = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            row["step"] = int(row["step"])
        except (ValueError, TypeError, KeyError):
            unreadable += 1
            continue
        rows.append(row)
    return rows, unreadable


def _write_rows(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    """Replaces ``path`` atomically (a kill leaves the old or the new file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(temporary, path)


def _row_key(row: dict[str, Any]) -> tuple[int, frozenset[str]]:
    return int(row["step"]), frozenset(k for k in row if k != "step")


def _json_safe(values: dict[str, float]) -> dict[str, float | None]:
    # JSON has no NaN/inf: write null so any JSON reader can load the file.
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}
