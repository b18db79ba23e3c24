"""Config drift on resume: compare a run's saved config with the one it is resumed with.

A checkpoint restores only under the fields that decided its shapes and tree structure
(:data:`SHAPE_FIELDS`); changing one of them on resume is refused before any checkpoint is
read, with one line naming every such field. Other changes (learning rate, steps, logging)
are allowed: they are returned for a warning and recorded in ``config.json``, whose top level
is always the config the newest weights were trained with, and whose ``history`` list holds
one entry per resume::

    {"model": "draem", ..., "history": [
        {"step": 400, "time": "2026-01-01 12:00:00 +0000",
         "changes": ["learning_rate: 0.0001 (saved) vs 0.001 (now)"]}]}

Readers of ``config.json`` drop the keys of :data:`RECORD_KEYS` (:func:`strip_record`).
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

# Config fields that decide the shapes and tree structure of the saved state (a whole group
# where the name is a group): a checkpoint restores only under the values it was written with.
SHAPE_FIELDS = (
    "model",
    "param_dtype",
    "optimizer",
    "draem",
    "autoencoder",
    "data.image_size",
    "data.clip_length",
)
# Inside those groups, fields that change values but not the state's structure.
NOT_SHAPE_FIELDS = ("draem.init_scheme", "draem.sspcab_init", "draem.disc_input_order")
# Top-level keys of config.json that are the run's record, not config fields.
RECORD_KEYS = ("history",)

_MISSING = object()


class ConfigDriftError(ValueError):
    """The resumed config changes a shape-affecting field; the message names the way out."""


class Drift(NamedTuple):
    """Differences between a saved and a new config, one formatted line per field.

    Attributes:
        shape_changes: Changes of :data:`SHAPE_FIELDS` present in both configs.
        other_changes: Every other change, including fields present in only one config.
    """

    shape_changes: list[str]
    other_changes: list[str]


def is_shape_field(key: str) -> bool:
    """Whether a flattened key (``'draem.recon_width'``) decides the state's shapes."""
    return key not in NOT_SHAPE_FIELDS and any(
        key == f or key.startswith(f"{f}.") for f in SHAPE_FIELDS
    )


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{'a.b': value}``; tuples become lists (as JSON stores them)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def strip_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json``'s content without the run record (:data:`RECORD_KEYS`)."""
    return {k: v for k, v in values.items() if k not in RECORD_KEYS}


def compare_configs(saved: Mapping[str, Any], now: Mapping[str, Any]) -> Drift:
    """Every field whose value differs, as ``'draem.recon_width: 128 (saved) vs 16 (now)'``.

    A field present in only one config (a field added or removed by a newer version of the
    library) is an other change even inside a shape group: its absence cannot be compared,
    and a restore under a truly different structure still fails on its own.

    Args:
        saved: The config the checkpoints were written with (nested dict; run-record keys are
            ignored).
        now: The config about to be used (nested dict, or anything with ``to_dict()``).

    Returns:
        ``Drift(shape_changes, other_changes)``, each sorted by field name.
    """
    a, b = flatten(strip_record(_as_dict(saved))), flatten(strip_record(_as_dict(now)))
    shape, other = [], []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, _MISSING), b.get(key, _MISSING)
        if (old == new and type(old) is type(new)) or _same_number(old, new):
            continue
        line = f"{key}: {_show(old)} (saved) vs {_show(new)} (now)"
        both = old is not _MISSING and new is not _MISSING
        (shape if both and is_shape_field(key) else other).append(line)
    return Drift(shape, other)


def check_resume(
    saved: Mapping[str, Any], now: Mapping[str, Any], workdir: str | os.PathLike[str]
) -> list[str]:
    """Refuses a shape change on resume; returns the other changes (for a warning).

    Args:
        saved: The run's saved config (``config.json``, record keys allowed).
        now: The config of the resumed run, resolved as it will be saved.
        workdir: The run's directory, named in the error's way out.

    Returns:
        The non-shape changes, one line each (empty when nothing changed).

    Raises:
        ConfigDriftError: A shape-affecting field differs; one line listing each and the fix.
    """
    drift = compare_configs(saved, now)
    if drift.shape_changes:
        raise ConfigDriftError(
            f"cannot resume {workdir} with a different model shape: "
            f"{'; '.join(drift.shape_changes)}. Resume with the run's own config "
            f"(--config=configs/from_run.py:{workdir}, other fields may still be overridden), "
            "or train the new shape in another --workdir."
        )
    return drift.other_changes


def read_saved_config(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``<workdir>/config.json`` without its run record; None if the file is missing.

    Raises:
        ValueError: The file is not a JSON object.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object (the run's config).")
    return strip_record(values)


def record_resume(
    workdir: str | os.PathLike[str],
    changes: list[str],
    step: int,
    *,
    config: Mapping[str, Any],
) -> None:
    """Rewrites ``config.json`` as ``config`` plus the history with one more resume entry.

    The file is replaced atomically (written beside it, then renamed), so a kill leaves the
    old or the new record, never a truncated one.

    Args:
        workdir: The run's directory.
        changes: The non-shape changes of this resume (from :func:`check_resume`).
        step: The step the run resumes from.
        config: The config the run continues with (nested dict or ``ConfigDict``).
    """
    path = pathlib.Path(workdir) / "config.json"
    history: list[Any] = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            history = list(old.get("history", [])) if isinstance(old, dict) else []
        except ValueError:
            history = []  # an unreadable record is replaced; the config below is complete
    entry = {
        "step": int(step),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "changes": list(changes),
    }
    record = {**strip_record(_as_dict(config)), "history": [*history, entry]}
    temporary = path.with_name(f".config.json.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=repr))
    os.replace(temporary, path)


def _as_dict(values: Any) -> dict[str, Any]:
    return values.to_dict() if hasattr(values, "to_dict") else dict(values)


def _same_number(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same value (JSON and flags may give either); True is not 1.
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, default=repr)
