"""Checkpointing: an Orbax ``CheckpointManager`` wrapper for save, resume and best-model tracking.

Each checkpoint step is one directory ``<directory>/<step>/`` holding four items:

``state``
    The training state: any pytree of arrays (a flax ``TrainState`` subclass, a dict, ...),
    written with ``StandardSave``. It is always the *unreplicated* state: under ``jax.pmap``
    the caller takes device 0's copy (``jax.tree.map(lambda x: x[0], state)``) before
    :meth:`Checkpointer.save` and replicates again after :meth:`Checkpointer.restore`.
``data``
    The input iterator state (``grain`` ``DatasetIterator.get_state()``, a small JSON dict),
    so a resumed run sees the same batches as an uninterrupted one.
``config``
    A JSON copy of the experiment configuration, a record of what produced the weights.
``metrics``
    Orbax's own item: the metrics passed to ``save``, used to rank steps for ``keep_best``.

Retention keeps the newest ``keep_latest`` steps *and* the ``keep_best`` steps with the best
``best_metric`` (``AnyPreservationPolicy([LatestN, BestN])``). Orbax's older
``max_to_keep`` + ``best_fn`` pair ranks every step by the metric alone, so it can delete the
newest step and lose the resume point; it is not used here.

Example::

    with Checkpointer(workdir / "checkpoints", keep_latest=2, best_metric="auroc") as ckpt:
        if ckpt.latest_step() is not None:
            state, data_state, _, step = ckpt.restore(jax.eval_shape(lambda: state))
            it.set_state(data_state)
        for step in ...:
            ...
            ckpt.save(step, state, data_state=it.get_state(), metrics=metrics,
                      config=config.to_dict())
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

logger = logging.getLogger(__name__)

PyTree = Any

# Item names inside each step directory; "metrics" is reserved by Orbax for its own item.
_STATE, _DATA, _CONFIG = "state", "data", "config"
_METRICS_FILE = os.path.join("metrics", "metrics")
# Unreadable steps are moved here; the name is not a step number, so Orbax never lists it.
CORRUPT_SUBDIR = "corrupt"


class CheckpointError(Exception):
    """Base class of the errors raised by :class:`Checkpointer`."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """There is no checkpoint step to restore in the directory (or not the requested one)."""

    def __init__(self, directory: str, step: int | None = None):
        self.directory = directory
        self.step = step
        what = "no checkpoint" if step is None else f"no checkpoint for step {step}"
        super().__init__(
            f"{what} in {directory}. To start from scratch, check "
            "`Checkpointer.latest_step() is None` before calling `restore`; to resume, point "
            "the checkpoint directory at the work directory of the earlier run."
        )


class CheckpointRestoreError(CheckpointError):
    """Checkpoint steps exist but none of them could be restored onto the given target."""


class RestoredCheckpoint(NamedTuple):
    """What :meth:`Checkpointer.restore` returns (a tuple: unpack it or use the names).

    Attributes:
        state: The restored state, with the structure of the restore target.
        data_state: The saved input-iterator state, or None if none was saved.
        config: The saved configuration as a JSON dict, or None if none was saved.
        step: The step that was restored.
    """

    state: PyTree
    data_state: dict[str, Any] | None
    config: dict[str, Any] | None
    step: int


class Checkpointer:
    """Saves and restores training checkpoints in one directory; use it as a context manager.

    ``with Checkpointer(directory, ...) as ckpt:`` opens the Orbax manager on entry and closes
    it on exit, which waits for the last asynchronous save to be committed. A manager that is
    never closed can leave half-written ``<step>.orbax-checkpoint-tmp-*`` directories; such
    leftovers of a killed process were never committed (Orbax ignores them) and are removed
    when the directory is next opened.

    Saves are asynchronous by default: ``save`` copies the arrays to host memory and returns
    while the files are written in the background, so the caller may donate or overwrite the
    state right away. Each ``save`` first waits for the previous one to finish.

    Args:
        directory: Root directory of the checkpoints; created if missing.
        keep_latest: How many of the newest steps to keep (at least 1, so the resume point is
            never deleted); None keeps every step.
        best_metric: Name of the metric (a key of the ``metrics`` passed to ``save``) that
            ranks steps for ``keep_best`` and :meth:`best_step`; None disables best tracking
            and metrics are not stored.
        best_mode: ``'max'`` if a larger ``best_metric`` is better, ``'min'`` otherwise.
        keep_best: How many of the best-ranked steps to keep besides the newest ones. Only
            steps saved with a finite ``best_metric`` compete: a step saved without metrics is
            kept only while it is among the newest ``keep_latest``.
        async_save: Write checkpoints in a background thread.
        save_interval_steps: ``save`` without ``force`` only writes steps that are multiples
            of this (and the first step of a run).
        read_only: Open for reading only (e.g. evaluating a run that may still be training):
            nothing is created, cleaned up or moved aside, and ``save`` is not allowed.

    Raises:
        ValueError: On an invalid retention setting or ``best_mode``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_latest: int | None = 2,
        best_metric: str | None = None,
        best_mode: Literal["max", "min"] = "max",
        keep_best: int = 1,
        async_save: bool = True,
        save_interval_steps: int = 1,
        read_only: bool = False,
    ):
        if keep_latest is not None and keep_latest < 1:
            raise ValueError(f"keep_latest must be >= 1 or None, got {keep_latest}")
        if keep_best < 0:
            raise ValueError(f"keep_best must be >= 0, got {keep_best}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}")
        # Orbax requires an absolute path.
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep_latest = keep_latest
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.keep_best = keep_best
        self.async_save = async_save
        self.save_interval_steps = save_interval_steps
        # Readers of a run that may still be training (evaluate, predict) must not clean up the
        # writer's half-written steps, create folders or move anything aside.
        self.read_only = read_only
        self._manager: ocp.CheckpointManager | None = None
        self._barrier_count = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Checkpointer:
        if self._manager is not None:
            raise RuntimeError("this Checkpointer is already open")
        if not self.read_only:
            os.makedirs(self.directory, exist_ok=True)
            self._set_aside_unreadable_metrics()
        policies: list[ocp_managers.PreservationPolicy] = [ocp_managers.LatestN(self.keep_latest)]
        if self.best_metric is not None:
            policies.append(
                ocp_managers.BestN(
                    get_metric_fn=self._score,
                    reverse=False,  # _score is "larger is better" in both modes
                    n=self.keep_best,
                    # Orbax's default (True) keeps metric-less steps forever: every periodic
                    # save between evaluations would pile up on disk.
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=self.save_interval_steps,
            # `preservation_policy` alone decides deletion; `best_fn` is still needed because
            # Orbax only writes the metrics item (and ranks `best_step`) when it is set.
            preservation_policy=ocp_managers.AnyPreservationPolicy(policies),
            best_fn=self._score if self.best_metric is not None else None,
            best_mode="max",
            enable_async_checkpointing=self.async_save,
            cleanup_tmp_directories=not self.read_only,
            create=not self.read_only,
            read_only=self.read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _DATA, _CONFIG)
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for a pending asynchronous save and closes the manager (idempotent)."""
        if self._manager is not None:
            try:
                self._manager.close()
            finally:
                self._manager = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        """The open Orbax ``CheckpointManager``.

        Raises:
            RuntimeError: Outside the ``with`` block.
        """
        if self._manager is None:
            raise RuntimeError(
                "Checkpointer is not open: use it as `with Checkpointer(directory) as ckpt:`"
            )
        return self._manager

    def wait_until_finished(self) -> None:
        """Blocks until the pending asynchronous save (if any) is committed."""
        self.manager.wait_until_finished()

    # ------------------------------------------------------------------ queries

    def all_steps(self) -> list[int]:
        """Returns the committed steps, ascending (including one still being written)."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        """Returns the newest step, or None if the directory holds no checkpoint."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """Returns the step with the best ``best_metric``.

        Returns:
            The step, or None without ``best_metric`` or when no kept step has a finite value.
        """
        if self.best_metric is None:
            return None
        step = self.manager.best_step()
        if step is None or not math.isfinite(self._score(self.manager.metrics(step))):
            return None
        return step

    def should_save(self, step: int) -> bool:
        """Whether ``save(step, ...)`` without ``force`` would write (lets callers skip work)."""
        return self.manager.should_save(step)

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        state: PyTree,
        *,
        data_state: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        config: Any = None,
        force: bool = False,
    ) -> bool:
        """Saves one checkpoint step (asynchronously unless ``async_save=False``).

        Args:
            step: Training step; must be larger than every saved step unless ``force``.
            state: Unreplicated pytree of ``jax.Array`` / NumPy arrays / scalars.
            data_state: Input-iterator state, a JSON-serialisable dict.
            metrics: Scalar metrics (Python, NumPy or JAX scalars) of this step; the
                ``best_metric`` entry ranks it. Stored only when ``best_metric`` is set and
                finite here (otherwise the step is unranked, and Orbax logs a one-line
                warning).
            config: Experiment configuration: a dict or anything with ``to_dict()``
                (``ml_collections.ConfigDict``). Values JSON cannot hold are stored as their
                ``repr``.
            force: Save even if ``save_interval_steps`` would skip this step.

        Returns:
            True if the step was written, False if the save interval skipped it.

        Raises:
            TypeError: ``data_state`` is not JSON-serialisable.
            orbax.checkpoint.checkpoint_manager.StepAlreadyExistsError: With ``force`` on a
                step that already exists.
        """
        args = ocp.args.Composite(
            **{
                _STATE: ocp.args.StandardSave(state),
                _DATA: ocp.args.JsonSave(_data_to_json(data_state)),
                _CONFIG: ocp.args.JsonSave(_config_to_json(config)),
            }
        )
        tracked = _metrics_to_json(metrics)
        if tracked is not None and not math.isfinite(self._score(tracked)):
            # Only steps with a finite `best_metric` compete for `keep_best`; Orbax treats a
            # step without metrics as "not ranked", which is what a NaN evaluation deserves.
            tracked = None
        saved = self.manager.save(
            step,
            args=args,
            metrics=tracked if self.best_metric is not None else None,
            force=force,
        )
        if saved:
            logger.debug("Saving checkpoint step %d to %s", step, self.directory)
        return saved

    # ------------------------------------------------------------------ restore

    def restore(self, target_state: PyTree, step: int | None = None) -> RestoredCheckpoint:
        """Restores a checkpoint onto the structure of ``target_state``.

        With ``step=None`` the newest step is tried first. If it cannot be read (missing or
        truncated array files, garbage metadata, a missing item), a warning names the step and
        the directory and the next older step is tried, and so on. Once an older step restores,
        the unreadable newer ones are moved, not deleted, to ``<directory>/corrupt/<step>`` so
        that training can write those step numbers again; they stay there for inspection.
        Nothing is moved when no step restores, since the likely cause is then the target (a
        changed model or optimizer configuration) rather than the files.

        Args:
            target_state: A state of the saved structure: concrete arrays or the
                ``jax.ShapeDtypeStruct`` pytree of ``jax.eval_shape(create_state)``. Its pytree
                type is kept (a flax struct ``TrainState`` comes back as one, with its static
                ``apply_fn`` and ``tx``); arrays take its dtypes and shardings. Under
                ``jax.pmap`` pass the unreplicated target and replicate the result.
            step: A specific step to restore, with no fallback; None for the newest readable.

        Returns:
            ``RestoredCheckpoint(state, data_state, config, step)``.

        Raises:
            CheckpointNotFoundError: The directory holds no checkpoint, or not ``step``.
            CheckpointRestoreError: Steps exist but none could be restored onto the target;
                the first failure is chained as ``__cause__``.
        """
        manager = self.manager
        # A save still in flight must be committed before it is read (or moved aside).
        manager.wait_until_finished()
        if step is not None:
            if step not in manager.all_steps():
                raise CheckpointNotFoundError(self.directory, step)
            try:
                return self._restore_step(target_state, step)
            except Exception as e:
                raise CheckpointRestoreError(
                    f"could not restore checkpoint step {step} from {self.directory}: "
                    f"{type(e).__name__}: {_short(e)}"
                ) from e

        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise CheckpointNotFoundError(self.directory)
        failures: list[tuple[int, Exception]] = []
        for candidate in steps:
            try:
                restored = self._restore_step(target_state, candidate)
            # Orbax and TensorStore report damaged files with many exception types
            # (ValueError, KeyError, OSError, json errors, ...): any failure means "try older".
            except Exception as e:
                logger.warning(
                    "Checkpoint step %d in %s cannot be restored (%s: %s); trying an older step.",
                    candidate,
                    self.directory,
                    type(e).__name__,
                    _short(e),
                )
                failures.append((candidate, e))
                continue
            if failures:
                if not self.read_only:
                    self._move_aside([s for s, _ in failures], restored_step=candidate)
            return restored

        first_step, first_error = failures[0]
        raise CheckpointRestoreError(
            f"none of the checkpoint steps {sorted(steps)} in {self.directory} could be restored "
            f"onto the given target; the newest (step {first_step}) failed with "
            f"{type(first_error).__name__}: {_short(first_error)}. If the model, optimizer or "
            "state layout changed since they were written, restore with the original "
            "configuration or use a new work directory. Nothing was moved or deleted."
        ) from first_error

    def _restore_step(self, target_state: PyTree, step: int) -> RestoredCheckpoint:
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    _STATE: ocp.args.StandardRestore(target_state),
                    _DATA: ocp.args.JsonRestore(),
                    _CONFIG: ocp.args.JsonRestore(),
                }
            ),
        )
        return RestoredCheckpoint(
            state=restored[_STATE],
            data_state=restored[_DATA],
            config=restored[_CONFIG],
            step=step,
        )

    # ------------------------------------------------------------------ damaged files

    def _move_aside(self, steps: list[int], *, restored_step: int) -> None:
        """Moves unreadable step directories into ``<directory>/corrupt/`` (never deletes)."""
        moved = []
        if jax.process_index() == 0:
            corrupt_dir = os.path.join(self.directory, CORRUPT_SUBDIR)
            os.makedirs(corrupt_dir, exist_ok=True)
            for step in steps:
                source = os.path.join(self.directory, str(step))
                if not os.path.exists(source):
                    continue
                destination = _free_path(os.path.join(corrupt_dir, str(step)))
                shutil.move(source, destination)
                moved.append(destination)
        if jax.process_count() > 1:
            # Every process must see the moved directories before it re-lists the steps.
            self._barrier_count += 1
            ocp.multihost.sync_global_processes(
                f"sspcab_jax_checkpoint_move_aside_{self._barrier_count}"
            )
        self.manager.reload()
        logger.warning(
            "Restored step %d from %s instead of the newer unreadable step(s) %s, which were "
            "moved (not deleted) to %s for inspection.",
            restored_step,
            self.directory,
            steps,
            moved or os.path.join(self.directory, CORRUPT_SUBDIR),
        )

    def _set_aside_unreadable_metrics(self) -> None:
        """Renames unparsable metrics files, which would otherwise stop Orbax from opening.

        Orbax reads every step's metrics when the manager is created and fails on invalid
        JSON. Renaming only the metrics file keeps the step restorable; it then ranks as a
        step saved without metrics.
        """
        if jax.process_index() != 0:
            return
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name, _METRICS_FILE)
            if not name.isdigit() or not os.path.isfile(path):
                continue
            try:
                with open(path) as f:
                    json.load(f)
            except (OSError, ValueError) as e:
                destination = _free_path(path + ".corrupt")
                os.replace(path, destination)
                logger.warning(
                    "Checkpoint step %s in %s has an unreadable metrics file (%s); moved it to "
                    "%s. The step is still restorable but no longer ranks for best_step.",
                    name,
                    self.directory,
                    _short(e),
                    destination,
                )

    # ------------------------------------------------------------------ metric ranking

    def _score(self, metrics: Mapping[str, Any] | None) -> float:
        """Maps metrics to a score where larger is better; missing or non-finite -> -inf."""
        if not metrics or self.best_metric not in metrics:
            return -math.inf
        try:
            value = float(metrics[self.best_metric])
        except (TypeError, ValueError):
            return -math.inf
        if not math.isfinite(value):
            return -math.inf
        return value if self.best_mode == "max" else -value


# ---------------------------------------------------------------------- JSON helpers


def _short(error: BaseException, limit: int = 300) -> str:
    """First line of an error message, truncated (TensorStore errors embed long specs)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _free_path(path: str) -> str:
    """``path``, or ``path.1``, ``path.2``, ... if taken: a step can go bad more than once."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate


def _numpy_scalar(value: Any) -> Any:
    """JSON ``default`` hook: NumPy / JAX scalars and arrays become Python values."""
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        return np.asarray(value).tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _data_to_json(data_state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Checks the iterator state now, in the caller's thread, rather than in the writer."""
    if data_state is None:
        return None
    try:
        return json.loads(json.dumps(dict(data_state), default=_numpy_scalar))
    except TypeError as e:
        raise TypeError(f"data_state must be a JSON-serialisable dict: {e}") from e


def _config_to_json(config: Any) -> dict[str, Any] | None:
    """A JSON copy of the configuration; values JSON cannot hold become their ``repr``."""
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        config = config.to_dict()

    def default(value: Any) -> Any:
        try:
            return _numpy_scalar(value)
        except TypeError:
            return repr(value)

    return json.loads(json.dumps(config, default=default))


def _metrics_to_json(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Scalar metrics as Python floats (JAX scalars are not JSON); others are dropped."""
    if metrics is None:
        return None
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return out
