"""Failures inside asynchronous checkpoint threads, reported once instead of once per array.

When one array of an Orbax restore (or save) fails, Orbax stops waiting and closes its event
loop while TensorStore still reads or writes the other arrays. Each of those then calls back
into the closed loop from a TensorStore thread and Python prints a full
``RuntimeError: Event loop is closed`` traceback for it (through ``sys.unraisablehook``), and
asyncio logs ``Task exception was never retrieved`` for every abandoned task: thousands of
lines for a large model, none of which names the cause. The cause is raised (and reported)
in the main thread; :func:`report_async_errors_once` turns the echo into one line.

Commands call it once while setting up logging, unless asked for full tracebacks::

    if not verbose:
        report_async_errors_once()
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

CLOSED_LOOP = "Event loop is closed"
NEVER_RETRIEVED = "Task exception was never retrieved"

_lock = threading.Lock()
_counts = {"closed_loop": 0, "never_retrieved": 0}
_installed: dict[str, Any] = {}


def report_async_errors_once() -> None:
    """Installs the hook and the log filter (idempotent; process-wide).

    After it, the first callback that finds a closed event loop logs one warning and later
    ones are counted silently (:func:`suppressed_counts`); the first ``Task exception was
    never retrieved`` is logged as one line without its traceback and the rest are dropped.
    Every other unraisable exception still reaches the previous hook unchanged.
    """
    with _lock:
        if _installed:
            return
        previous = sys.unraisablehook
        _installed["previous_hook"] = previous
        sys.unraisablehook = _make_hook(previous)
        log_filter = _NeverRetrievedFilter()
        _installed["filter"] = log_filter
        logging.getLogger("asyncio").addFilter(log_filter)


def uninstall() -> None:
    """Restores the previous hook and removes the filter (for tests)."""
    with _lock:
        if not _installed:
            return
        sys.unraisablehook = _installed.pop("previous_hook")
        logging.getLogger("asyncio").removeFilter(_installed.pop("filter"))
        _counts.update(closed_loop=0, never_retrieved=0)


def suppressed_counts() -> dict[str, int]:
    """Echoes seen since installation: ``{'closed_loop': n, 'never_retrieved': m}``."""
    with _lock:
        return dict(_counts)


def _make_hook(previous: Callable[[Any], object]) -> Callable[[Any], None]:
    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and CLOSED_LOOP in str(error)):
            previous(unraisable)
            return
        with _lock:
            _counts["closed_loop"] += 1
            first = _counts["closed_loop"] == 1
        if first:
            logger.warning(
                "a checkpoint read or write was abandoned after an earlier error (reported "
                "separately); its background threads found their event loop closed. Further "
                "such messages are not shown."
            )

    return hook


class _NeverRetrievedFilter(logging.Filter):
    """Keeps the first ``Task exception was never retrieved`` as one line, drops the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(NEVER_RETRIEVED):
            return True
        with _lock:
            _counts["never_retrieved"] += 1
            first = _counts["never_retrieved"] == 1
        if not first:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (
            f"{NEVER_RETRIEVED} in a background task ({type(error).__name__}: "
            f"{_first_line(error)}); further such messages are not shown."
            if error is not None
            else f"{NEVER_RETRIEVED} in a background task; further such messages are not shown."
        )
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


def _first_line(error: BaseException | None, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    return text if len(text) <= limit else text[:limit] + "..."
