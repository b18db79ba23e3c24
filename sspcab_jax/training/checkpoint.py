"""Checkpoints: save, resume and best-step tracking over an Orbax ``CheckpointManager``.

Each step ``<directory>/<step>/`` holds ``state`` (unreplicated), ``data`` (input iterator
state: a resumed run sees the same batches), ``config`` (JSON copy), ``checksums`` (dtype, shape,
CRC-32 of each state array, checked on restore: flipped bytes that still decode are caught like
missing files) and Orbax's ``metrics`` (they rank steps by ``best_metric``). A calibrated step
also holds ``calibration.json`` (:func:`write_step_calibration`), written after the step is
committed: the thresholds travel with the weights they were computed for.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN

logger = logging.getLogger(__name__)

# Item names inside each step directory; "metrics" is reserved by Orbax for its own item.
_STATE, _DATA, _CONFIG, _SUMS = "state", "data", "config", "checksums"
# Unreadable steps are moved here; the name is not a step number, so Orbax never lists it.
CORRUPT_SUBDIR = "corrupt"


class CheckpointNotFoundError(FileNotFoundError):
    """The directory holds no checkpoint step (or not the requested one)."""


class CheckpointRestoreError(Exception):
    """Checkpoint steps exist but none could be restored; the newest failure is the cause."""


class ChecksumMismatchError(ValueError):
    """An array read back differs from the checksum saved with it: the files were damaged."""


class RestoredCheckpoint(NamedTuple):
    """What :meth:`Checkpointer.restore` returns; ``data_state`` and ``config`` may be None."""

    state: Any
    data_state: dict[str, Any] | None
    config: dict[str, Any] | None
    step: int


def checksums(state: Any) -> dict[str, str]:
    """``"<dtype>[<shape>] crc32=<hex>"`` of every array leaf, keyed by its pytree path.

    zlib's CRC-32 (about 2.9 GiB/s on one CPU core, 3x SHA-1) detects every burst error of up
    to 32 bits, other damage with probability 1 - 2**-32. Python scalars (stored as JSON by
    Orbax) and arrays this process cannot address entirely are skipped.
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if hasattr(leaf, "dtype") and getattr(leaf, "is_fully_addressable", True):
            array = np.asarray(leaf)
            crc = zlib.crc32(np.ascontiguousarray(array.reshape(-1)).view(np.uint8))
            out[jax.tree_util.keystr(path)] = f"{array.dtype}{list(array.shape)} crc32={crc:08x}"
    return out


class Checkpointer:
    """Saves and restores training checkpoints in one directory; use it as a context manager.

    ``save`` returns once the arrays are copied to host memory (the caller may donate them);
    leaving the ``with`` block waits for the last write. Half-written ``*.orbax-checkpoint-tmp-*``
    directories of a killed writer are ignored and removed on the next writable open.
    Retention keeps the newest ``keep_latest`` steps and the best one (``AnyPreservationPolicy``:
    Orbax's ``max_to_keep`` + ``best_fn`` ranks by the metric alone, deleting resume points).

    Args:
        directory: Root directory of the checkpoints; created if missing.
        keep_latest: How many newest steps to keep (>= 1, else ValueError); None keeps all.
        best_metric: Key of the ``metrics`` given to ``save`` whose largest finite value marks
            the best step; None disables ranking.
        read_only: For readers of a run that may still be training (evaluate, predict):
            nothing is created, deleted, cleaned up or moved aside; ``save`` raises RuntimeError.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_latest: int | None = 2,
        best_metric: str | None = None,
        read_only: bool = False,
    ):
        if keep_latest is not None and keep_latest < 1:
            raise ValueError(f"keep_latest must be >= 1 or None, got {keep_latest}")
        self.directory = os.path.abspath(os.fspath(directory))  # Orbax needs absolute paths
        self.keep_latest = None if read_only else keep_latest
        self.best_metric, self.read_only = best_metric, read_only
        self._manager: ocp.CheckpointManager | None = None

    def __enter__(self) -> Checkpointer:
        if not self.read_only:
            os.makedirs(self.directory, exist_ok=True)
            self._set_aside_unreadable_metrics()
        ranked = self.best_metric is not None
        # BestN's default keeps metric-less steps forever: saves between evaluations pile up.
        best = BestN(get_metric_fn=self._score, n=1, keep_checkpoints_without_metrics=False)
        policies = [LatestN(self.keep_latest)] + [best] * ranked
        options = ocp.CheckpointManagerOptions(
            # The policy alone deletes; `best_fn` only makes Orbax store metrics and rank steps.
            preservation_policy=AnyPreservationPolicy(policies),
            best_fn=self._score if ranked else None,
            best_mode="max",
            cleanup_tmp_directories=not self.read_only,
            create=not self.read_only,
            read_only=self.read_only,
        )
        names = (_STATE, _DATA, _CONFIG, _SUMS)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=names)
        return self

    def __exit__(self, *exc_info: object) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()  # waits for a pending asynchronous save

    @property
    def manager(self) -> ocp.CheckpointManager:
        """The open Orbax manager."""
        if self._manager is None:
            raise RuntimeError("Checkpointer is not open: use `with Checkpointer(directory) as c:`")
        return self._manager

    def latest_step(self) -> int | None:
        """The newest step, or None if the directory holds no checkpoint."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the largest finite ``best_metric``, or None."""
        step = self.manager.best_step() if self.best_metric is not None else None
        if step is None or not math.isfinite(self._score(self.manager.metrics(step))):
            return None
        return step

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_state: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        config: Any = None,
    ) -> None:
        """Saves one step asynchronously, with the checksums of ``state``'s arrays.

        Args:
            step: Training step, larger than every saved step.
            state: Unreplicated pytree of ``jax.Array`` / NumPy arrays / scalars.
            data_state: Input-iterator state; TypeError if it is not a JSON-serialisable dict.
            metrics: Scalars of this step; only a finite ``best_metric`` ranks it (a step
                without one is kept only while among the newest ``keep_latest``).
            config: A dict or ``ConfigDict``; values JSON cannot hold are stored as ``repr``.
        """
        if self.read_only:  # Orbax would skip the save with a log line only
            raise RuntimeError(f"{self.directory} is open read-only: save is not allowed")
        score = self._score(metrics)  # a step without a finite score (NaN eval) is unranked
        args = {
            _STATE: ocp.args.StandardSave(state),
            # Checked now, in the caller's thread, rather than in the writer's.
            _DATA: ocp.args.JsonSave(_json(data_state and dict(data_state), strict=True)),
            _CONFIG: ocp.args.JsonSave(_json(getattr(config, "to_dict", lambda: config)())),
            _SUMS: ocp.args.JsonSave(checksums(state)),
        }
        ranked = {self.best_metric: score} if math.isfinite(score) else None
        self.manager.save(step, args=ocp.args.Composite(**args), metrics=ranked)

    def restore(self, target_state: Any, step: int | None = None) -> RestoredCheckpoint:
        """Restores a step onto the structure of ``target_state`` and verifies its checksums.

        A step that cannot be read (missing, truncated, garbled files) or fails its checksums
        gets a warning naming it and the reason, and the next older one is tried. Failed steps
        are then moved (not deleted) to ``<directory>/corrupt/<step>`` so training can write
        them again; not if ``read_only`` or no step restores (then a changed model is likely).

        Args:
            target_state: Concrete arrays or the ``jax.eval_shape`` pytree of the saved
                structure; its pytree type, dtypes and shardings are kept.
            step: A specific step, with no fallback; None for the newest that restores.

        Raises:
            CheckpointNotFoundError: No checkpoint, or not ``step``.
            CheckpointRestoreError: No candidate step restores; the newest failure is chained.
        """
        self.manager.wait_until_finished()  # a save in flight must be committed before reading
        steps = sorted(self.manager.all_steps(), reverse=True) if step is None else [step]
        if not steps or steps[0] not in self.manager.all_steps():
            what = "no checkpoint" if step is None else f"no checkpoint for step {step}"
            raise CheckpointNotFoundError(f"{what} in {self.directory}")
        failures: list[tuple[int, Exception]] = []
        for candidate in steps:
            try:
                restored = self._restore_step(target_state, candidate)
            # Damaged files raise many exception types (ValueError, OSError, KeyError, ...).
            except Exception as e:
                failures.append((candidate, e))
                logger.warning(
                    "Checkpoint step %d in %s cannot be restored (%s: %s).",
                    *(candidate, self.directory, type(e).__name__, _short(e)),
                )
                continue
            if failures and not self.read_only:
                self._move_aside([s for s, _ in failures], restored_step=candidate)
            return restored
        newest, error = failures[0]
        raise CheckpointRestoreError(
            f"no checkpoint step of {sorted(steps)} in {self.directory} could be restored; step "
            f"{newest} failed with {type(error).__name__}: {_short(error)}. If the model changed, "
            "use the original config or a new work directory. Nothing was moved or deleted."
        ) from error

    def _restore_step(self, target_state: Any, step: int) -> RestoredCheckpoint:
        verify = os.path.isdir(os.path.join(self.directory, str(step), _SUMS))
        args = {_STATE: ocp.args.StandardRestore(target_state)}
        args.update({n: ocp.args.JsonRestore() for n in (_DATA, _CONFIG) + (_SUMS,) * verify})
        items = self.manager.restore(step, args=ocp.args.Composite(**args))
        if not verify:
            logger.warning("Checkpoint step %d has no checksums; restored unverified.", step)
        saved, read = (items[_SUMS], checksums(items[_STATE])) if verify else ({}, {})
        if bad := [key for key, value in saved.items() if read.get(key, value) != value]:
            raise ChecksumMismatchError(
                f"{len(bad)} array(s) differ from their checksums, e.g. state{bad[0]} reads as "
                f"{read[bad[0]]}, saved as {saved[bad[0]]}"
            )
        return RestoredCheckpoint(items[_STATE], items[_DATA], items[_CONFIG], step)

    def _move_aside(self, steps: list[int], *, restored_step: int) -> None:
        """Moves unreadable step directories into ``<directory>/corrupt/`` (never deletes)."""
        corrupt_dir = os.path.join(self.directory, CORRUPT_SUBDIR)
        for step in steps if jax.process_index() == 0 else []:
            os.makedirs(corrupt_dir, exist_ok=True)
            destination = _free_path(os.path.join(corrupt_dir, str(step)))
            shutil.move(os.path.join(self.directory, str(step)), destination)
        if jax.process_count() > 1:  # all must see the moves before re-listing; unique name
            ocp.multihost.sync_global_processes(f"sspcab_jax_move_aside_{restored_step}_{steps[0]}")
        self.manager.reload()
        logger.warning(
            "Restored step %d from %s instead of the newer damaged step(s) %s, which were moved "
            "(not deleted) to %s for inspection.",
            *(restored_step, self.directory, steps, corrupt_dir),
        )

    def _set_aside_unreadable_metrics(self) -> None:
        """Renames unparsable metrics files (Orbax would not open); their steps stay usable."""
        names = [n for n in os.listdir(self.directory) if n.isdigit() and jax.process_index() == 0]
        paths = [os.path.join(self.directory, n, "metrics", "metrics") for n in names]
        for path in filter(os.path.isfile, paths):
            try:
                with open(path) as f:
                    json.load(f)
            except (OSError, ValueError) as e:
                os.replace(path, moved := _free_path(path + ".corrupt"))
                logger.warning(
                    "Unreadable metrics file %s (%s) moved to %s; the step no longer ranks.",
                    *(path, _short(e), moved),
                )

    def _score(self, metrics: Mapping[str, Any] | None) -> float:
        """``best_metric`` of ``metrics`` (larger is better); missing or non-finite -> -inf."""
        try:
            value = float((metrics or {})[self.best_metric])
        except (KeyError, TypeError, ValueError):
            return -math.inf
        return value if math.isfinite(value) else -math.inf


STEP_CALIBRATION = "calibration.json"


def write_step_calibration(directory: str | os.PathLike[str], step: int, text: str) -> bool:
    """Stores a calibration (JSON text) in the committed step ``<directory>/<step>/``.

    Written atomically (temporary file, then rename); a later calibration replaces it. Returns
    False, with a warning, when the step directory does not exist (e.g. deleted by retention).
    """
    step_dir = os.path.join(os.fspath(directory), str(step))
    if not os.path.isdir(step_dir):
        logger.warning("No checkpoint step %s to store the calibration in.", step_dir)
        return False
    target = os.path.join(step_dir, STEP_CALIBRATION)
    with open(target + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(target + ".tmp", target)
    return True


def read_step_calibration(directory: str | os.PathLike[str], step: int) -> str | None:
    """The calibration JSON text stored in step ``step``, or None when it has none."""
    path = os.path.join(os.fspath(directory), str(step), STEP_CALIBRATION)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read()


def _short(error: BaseException, limit: int = 300) -> str:
    """First line of an error message, truncated (TensorStore errors embed long specs)."""
    return (str(error).strip().splitlines() or [""])[0][:limit]


def _free_path(path: str) -> str:
    """``path``, or ``path.1``, ``path.2``, ... if taken: a step can go bad more than once."""
    paths = (f"{path}.{n}" if n else path for n in itertools.count())
    return next(p for p in paths if not os.path.exists(p))


def _json(value: Any, *, strict: bool = False) -> Any:
    """A JSON copy: NumPy / JAX values become Python ones, others fail (strict) or their repr."""

    def default(v: Any) -> Any:
        if isinstance(v, np.generic | np.ndarray | jax.Array):
            return np.asarray(v).tolist()
        if strict:
            raise TypeError(f"data_state must be JSON-serialisable, got a {type(v).__name__}")
        return repr(v)

    return None if value is None else json.loads(json.dumps(value, default=default))
