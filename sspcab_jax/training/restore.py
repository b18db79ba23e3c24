"""Load a trained run back from its work directory: config, model and restored state.

A run directory written by ``train_and_evaluate`` holds ``config.json`` (the resolved config)
and ``checkpoints/`` (Orbax). :func:`load_run` rebuilds the model from the config, restores the
chosen checkpoint onto an abstract target and returns everything inference needs::

    config, model, state, step = load_run("workdirs/demo", which="best")

Every failure a person can cause (wrong directory, no checkpoint yet, an edited config.json)
or meet (checkpoint files damaged after they were written) raises one :class:`RunError` whose
one-line message names the fix.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import linen as nn

from sspcab_jax.training.checkpoint import (
    Checkpointer,
    CheckpointNotFoundError,
    CheckpointRestoreError,
    ChecksumMismatchError,
)
from sspcab_jax.training.config_drift import (
    NOT_SHAPE_FIELDS,
    SHAPE_FIELDS,
    flatten,
    strip_record,
)
from sspcab_jax.training.state import TrainState, create_model, create_train_state

logger = logging.getLogger(__name__)

WHICH = ("best", "latest")
TRAIN_HINT = "python -m train.main --config=configs/<experiment>.py --workdir=<run>"

# The shape-deciding fields have one owner (config_drift); readers and resume share them.
STRUCTURAL_FIELDS = SHAPE_FIELDS
_NOT_STRUCTURAL = NOT_SHAPE_FIELDS


class RunError(Exception):
    """A run directory cannot be used as asked; the message says how to fix it."""


class RunNotFoundError(RunError, FileNotFoundError):
    """The directory is not a training run (no ``config.json``) or holds no checkpoint."""


class ConfigMismatchError(RunError):
    """``config.json`` no longer describes the model stored in the checkpoints."""


class CorruptCheckpointError(RunError):
    """No checkpoint step reads back intact (checksums, decoding): the files were damaged."""


class LoadedRun(NamedTuple):
    """What :func:`load_run` returns (a tuple: unpack it or use the names).

    Attributes:
        config: The run's resolved config, as written to ``config.json``.
        model: The unbound Flax module (single-device: no ``pmap`` BatchNorm axis).
        state: The restored :class:`TrainState` on the default device.
        step: The training step of the restored checkpoint.
    """

    config: ml_collections.ConfigDict
    model: nn.Module
    state: TrainState
    step: int


def read_run_config(workdir: str | os.PathLike[str]) -> ml_collections.ConfigDict:
    """Reads ``<workdir>/config.json`` as an unlocked ``ConfigDict`` (lists where tuples were).

    Raises:
        RunNotFoundError: ``config.json`` is missing.
        RunError: ``config.json`` is not a JSON object.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise RunNotFoundError(
            f"{workdir} is not a run directory: it has no config.json. Pass the --workdir of a "
            f"training run, or train first with `{TRAIN_HINT}`."
        )
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(
            f"{path} cannot be read as JSON ({e}). Restore it from a backup or from the copy "
            "saved in every checkpoint (checkpoints/<step>/config/metadata)."
        ) from e
    if not isinstance(values, dict):
        raise RunError(f"{path} must hold a JSON object (the run's config), got {type(values)}.")
    # config.json also holds the run's record (its resume history), which is not a field.
    return ml_collections.ConfigDict(strip_record(values))


def abstract_state(config: ml_collections.ConfigDict, model: nn.Module) -> TrainState:
    """The state's structure, shapes and dtypes without computing any parameter.

    Returns:
        A :class:`TrainState` whose array leaves are ``jax.ShapeDtypeStruct`` placed on the
        first local device.
    """
    shapes = jax.eval_shape(lambda: create_train_state(config, model, jax.random.key(0)))
    # Without a sharding Orbax restores NumPy arrays; ask for arrays on the default device.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)


def load_run(
    workdir: str | os.PathLike[str], which: Literal["best", "latest"] = "best"
) -> LoadedRun:
    """Restores a trained run for inference.

    ``which='best'`` restores the step with the best ``config.best_metric``; a run trained
    without one (``best_metric=''``), or whose ranked step cannot be restored, gets the latest
    instead, with a log line saying so. ``which='latest'`` restores the newest step that reads
    and passes its checksums. Skipping a damaged newer step is never silent: a warning names
    it, the reason and the step used (the run's own record, e.g. ``metrics.json``, gets that
    step). Nothing is moved or deleted, since the run may still be training; resuming the
    training moves damaged steps to ``checkpoints/corrupt/``.

    Args:
        workdir: The run directory (``--workdir`` of training).
        which: ``'best'`` or ``'latest'``.

    Returns:
        ``LoadedRun(config, model, state, step)``.

    Raises:
        ValueError: ``which`` is not one of ``WHICH``.
        RunNotFoundError: No ``config.json`` or no checkpoint in the directory.
        ConfigMismatchError: ``config.json`` differs from the checkpoint's config in a field of
            ``STRUCTURAL_FIELDS`` (or no step restores and none has a readable config copy).
        CorruptCheckpointError: No step restores although the structural fields match.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    config = read_run_config(workdir)
    directory = pathlib.Path(workdir) / "checkpoints"
    if not directory.is_dir() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise RunNotFoundError(
            f"{workdir} has a config.json but no checkpoint in {directory}: the run did not "
            f"reach its first save. Train (or resume) it with `{TRAIN_HINT}`, or raise its "
            "checkpointing frequency with --config.checkpoint_every_steps."
        )
    model = create_model(config)
    target = abstract_state(config, model)
    best_metric = config.get("best_metric", "") or None
    # Read-only: never deletes, cleans up or moves anything of a run that may be training.
    with Checkpointer(directory, best_metric=best_metric, read_only=True) as ckpt:
        # Compare with the checkpoint's own config first: a changed width would otherwise fail
        # on every step (and every array) before the cause could be named.
        saved_step, saved = _saved_config(ckpt)
        diffs = structural_differences(config.to_dict(), saved) if saved is not None else []
        if diffs:
            raise _mismatch_error(workdir, saved_step, "; ".join(diffs), fixable=True)
        try:
            restored = _restore(ckpt, target, which)
        except CheckpointNotFoundError as e:
            raise RunNotFoundError(
                f"no readable checkpoint in {directory}. Train (or resume) the run with "
                f"`{TRAIN_HINT}`."
            ) from e
        except CheckpointRestoreError as e:
            # With the structure matching, a failure means damaged files (a flipped byte that
            # still decodes fails the checksums; others fail to decode).
            if saved is not None or isinstance(e.__cause__, ChecksumMismatchError):
                reason = (str(e.__cause__).strip().splitlines() or [""])[0][:300]
                raise CorruptCheckpointError(
                    f"no checkpoint of {workdir} can be used: the newest (step "
                    f"{ckpt.latest_step()}) fails with {type(e.__cause__).__name__}: {reason}. "
                    "Its files were damaged after they were written (or the model code changed): "
                    "restore checkpoints/ from a copy, or retrain in a new --workdir."
                ) from e
            raise _mismatch_error(workdir, saved_step, str(e), fixable=False) from e
    logger.info("restored %s step %d from %s", which, restored.step, directory)
    return LoadedRun(config, model, restored.state, int(restored.step))


def _restore(ckpt: Checkpointer, target: TrainState, which: str) -> Any:
    """``ckpt.restore`` of the best step, falling back to the newest readable one."""
    best = ckpt.best_step() if which == "best" else None
    if which == "best" and best is None:
        logger.info("no step ranked by best_metric in %s; using the latest", ckpt.directory)
    if best is not None:
        try:
            return ckpt.restore(target, step=best)
        except CheckpointRestoreError as e:
            logger.warning(
                "best step %d in %s cannot be restored (%s); using the latest readable step",
                best,
                ckpt.directory,
                e,
            )
    restored = ckpt.restore(target)
    if restored.step != ckpt.latest_step():
        logger.warning(
            "using step %d of %s: the newer step(s) cannot be restored (warnings above). Resume "
            "the training to move them to checkpoints/corrupt/.",
            *(restored.step, ckpt.directory),
        )
    return restored


def structural_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Fields of ``STRUCTURAL_FIELDS`` whose values differ between two config dicts.

    Args:
        ours: The config about to be used (``config.json``), as a nested dict.
        theirs: The config stored in the checkpoint, as a nested dict.

    Returns:
        One ``"<field>: <ours> in config.json, <theirs> in the checkpoint"`` line per field.
    """
    a, b = flatten(ours), flatten(theirs)
    return [
        f"{key}: {a.get(key, '<missing>')!r} in config.json, "
        f"{b.get(key, '<missing>')!r} in the checkpoint"
        for key in sorted(set(a) | set(b))
        if _is_structural(key) and a.get(key) != b.get(key)
    ]


def _mismatch_error(
    workdir: str | os.PathLike[str], step: int | None, what: str, *, fixable: bool
) -> ConfigMismatchError:
    """One error naming the differing fields (or the restore failure) and the fix."""
    copy = f"checkpoints/{step}/config/metadata" if step is not None else "checkpoints/<step>/"
    if fixable:
        fix = (
            f"Put the checkpoint's values back in {pathlib.Path(workdir) / 'config.json'} (its "
            f"copy of the training config is {copy}), or train a new run with the new values in "
            "another --workdir."
        )
    else:
        fix = (
            f"Check that config.json is the one this run was trained with (compare it with {copy})"
            ", or retrain in a new --workdir if the checkpoint files are damaged."
        )
    what = what.rstrip(".")
    return ConfigMismatchError(
        f"the config of {workdir} does not match its checkpoint: {what}. The fields that must "
        f"equal those of the training run are {_field_list()}. {fix}"
    )


def _saved_config(ckpt: Checkpointer) -> tuple[int | None, dict[str, Any] | None]:
    """``(step, config)`` stored beside the state in the newest step whose copy is readable."""
    for step in sorted(ckpt.manager.all_steps(), reverse=True):
        try:
            args = ocp.args.Composite(config=ocp.args.JsonRestore())
            config = ckpt.manager.restore(step, args=args)["config"]
        except Exception:  # a damaged copy only costs the detailed message: try older steps
            continue
        if isinstance(config, dict):
            return step, config
    return None, None


def _field_list() -> str:
    groups = ("draem", "autoencoder")
    return ", ".join(f"{f}.*" if f in groups else f for f in STRUCTURAL_FIELDS)


def _is_structural(key: str) -> bool:
    return key not in _NOT_STRUCTURAL and any(
        key == f or key.startswith(f"{f}.") for f in STRUCTURAL_FIELDS
    )
