"""Train state and optimisers from an experiment config.

The model of a config comes from its task (``sspcab_jax.training.tasks``); :func:`create_model`,
:func:`model_input_shape` and :func:`create_train_state` are the config-level shortcuts to it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn
from flax.training import train_state

Array = jax.Array

SCHEDULES = ("official", "anomalib", "constant")
OPTIMIZERS = ("adam", "sgd")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


class TrainState(train_state.TrainState):
    """Flax ``TrainState`` plus BatchNorm running statistics.

    Attributes:
      batch_stats: the ``batch_stats`` collection (an empty dict for models without BatchNorm).
    """

    batch_stats: Any = None


def create_model(
    config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None
) -> nn.Module:
    """The unbound Flax module of ``config`` (``get_task(config).create_model``).

    Args:
      config: experiment config.
      bn_axis_name: BatchNorm reduction axis under ``pmap``.
    """
    return _task(config).create_model(bn_axis_name)


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Step-decay schedule measured in optimiser steps.

    ``'official'``: ``learning_rate`` decayed by ``lr_gamma`` (0.2) at ``lr_milestones``
    fractions (0.8, 0.9) of ``total_steps``, as the ``MultiStepLR`` of the official DRAEM
    ``train_DRAEM.py``. ``'anomalib'``: decay by 0.1 at epochs 400 and 600 of a 700-epoch run,
    i.e. at fractions 4/7 and 6/7 (anomalib's DRAEM ``lightning_model.py``). ``'constant'``: no
    decay.

    Args:
      config: experiment config.

    Returns:
      An optax schedule ``step -> learning rate``.
    """
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "anomalib":
        fractions, gamma = (400 / 700, 600 / 700), 0.1
    else:
        fractions, gamma = tuple(config.lr_milestones), config.lr_gamma
    boundaries = {max(1, int(round(f * config.total_steps))): gamma for f in fractions}
    return optax.piecewise_constant_schedule(lr, boundaries)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The configured optimiser with the configured schedule.

    ``config.optimizer``: ``'adam'`` (default; PyTorch's defaults, betas 0.9/0.999, eps 1e-8, as
    the official DRAEM) or ``'sgd'`` (plain gradient descent, useful to compare gradients: Adam's
    first step is ``lr * sign(g)``, which turns rounding noise on zero-gradient parameters, such as
    conv biases before BatchNorm, into full-size updates).
    """
    schedule = learning_rate_schedule(config)
    if config.get("optimizer", "adam") == "sgd":
        return optax.sgd(schedule)
    return optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)


def model_input_shape(config: ml_collections.ConfigDict, batch_size: int = 1) -> tuple[int, ...]:
    """Shape of one model input batch: ``[B, H, W, C]`` or ``[B, T, H, W, C]`` for clips."""
    return _task(config).input_shape(batch_size)


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, key: Array
) -> TrainState:
    """:func:`init_train_state` of the config's task."""
    return init_train_state(_task(config), model, key)


def init_train_state(task: Any, model: nn.Module, key: Array) -> TrainState:
    """Initialise parameters, BatchNorm statistics and optimiser state.

    Args:
      task: the run's :class:`~sspcab_jax.training.tasks.Task` (input shape, init arguments,
        and the config of the optimiser).
      model: the module of the task.
      key: the initialisation key (its own stream, independent of synthesis and data order).

    Returns:
      A :class:`TrainState` at step 0.
    """
    dummy = jnp.zeros(task.input_shape(), jnp.float32)
    # One compiled program instead of hundreds of eagerly dispatched (and compiled) ops.
    variables = jax.jit(functools.partial(model.init, **task.init_kwargs))(key, dummy)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=create_optimizer(task.config),
        batch_stats=variables.get("batch_stats", {}),
    )


def _task(config: ml_collections.ConfigDict) -> Any:
    # Imported here: the tasks build on this module (TrainState, DTYPES).
    from sspcab_jax.training.tasks import get_task

    return get_task(config)


def count_params(params: Any) -> int:
    """Total number of parameters in a pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
