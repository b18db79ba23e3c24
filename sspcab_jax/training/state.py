"""Train state, model construction and optimisers from an experiment config."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn
from flax.training import train_state

from sspcab_jax.layers import SSPCAB
from sspcab_jax.models import ConvAutoencoder, Draem, default_sspcab

Array = jax.Array

MODELS = ("draem", "autoencoder")
SCHEDULES = ("official", "anomalib", "constant")
OPTIMIZERS = ("adam", "sgd")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


class TrainState(train_state.TrainState):
    """Flax ``TrainState`` plus BatchNorm running statistics.

    Attributes:
      batch_stats: the ``batch_stats`` collection (an empty dict for models without BatchNorm).
    """

    batch_stats: Any = None


# Config fields ``sspcab_<name>`` that configure the block, handed to its factory as ``<name>``
# (the auto-encoder keeps ``sspcab_dilation`` and ``masked_centre`` itself: they are per position).
DRAEM_BLOCK_FIELDS = ("kernel_size", "dilation", "reduction_ratio", "attention", "activation")
AUTOENCODER_BLOCK_FIELDS = ("kernel_size", "reduction_ratio", "attention")


def _block_factory(fields: dict, base: Any, names: tuple[str, ...]) -> Any:
    """Pop ``sspcab_<name>`` from ``fields`` into ``functools.partial(base, <name>=...)``."""
    block = {n: fields.pop(f"sspcab_{n}") for n in names if f"sspcab_{n}" in fields}
    # A None value (e.g. ``sspcab_activation``) keeps the placement's default.
    return functools.partial(base, **{k: v for k, v in block.items() if v is not None})


def create_model(
    config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None
) -> nn.Module:
    """Build the model named by ``config.model`` from its sub-config.

    Args:
      config: experiment config (``config.model`` in ``MODELS``; fields of ``config.draem`` or
        ``config.autoencoder`` are the model's attributes).
      bn_axis_name: BatchNorm reduction axis under ``pmap`` (DRAEM only).

    Returns:
      An unbound Flax module.
    """
    dtype = DTYPES[config.get("dtype", "float32")]
    param_dtype = DTYPES[config.get("param_dtype", "float32")]
    if config.model == "draem":
        fields = dict(config.draem)
        fields["disc_input_order"] = tuple(
            fields.get("disc_input_order", ("reconstruction", "image"))
        )
        base = default_sspcab(fields.get("sspcab_placement", "none"))
        fields["sspcab"] = _block_factory(fields, base, DRAEM_BLOCK_FIELDS)
        return Draem(**fields, bn_axis_name=bn_axis_name, dtype=dtype, param_dtype=param_dtype)
    fields = dict(config.autoencoder)
    fields["sspcab_positions"] = tuple(fields.get("sspcab_positions", ()))
    fields["sspcab"] = _block_factory(fields, SSPCAB, AUTOENCODER_BLOCK_FIELDS)
    return ConvAutoencoder(**fields, dtype=dtype, param_dtype=param_dtype)


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Step-decay schedule measured in optimiser steps.

    ``'official'``: ``learning_rate`` decayed by ``lr_gamma`` (0.2) at ``lr_milestones``
    fractions (0.8, 0.9) of ``total_steps``, as the official DRAEM MultiStepLR
    (draem_sspcab.md §3.6). ``'anomalib'``: decay by 0.1 at epochs 400 and 600 of a 700-epoch
    run, i.e. at fractions 4/7 and 6/7 (§3.9). ``'constant'``: no decay.

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
    size = config.data.image_size
    channels = config.autoencoder.channels if config.model == "autoencoder" else 3
    clip = config.data.get("clip_length", 0) or 0
    if config.model == "autoencoder" and config.autoencoder.get("spatial_dims", 2) == 3:
        return (batch_size, clip, size, size, channels)
    return (batch_size, size, size, channels)


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, key: Array
) -> TrainState:
    """Initialise parameters, BatchNorm statistics and optimiser state.

    Args:
      config: experiment config.
      model: the module from :func:`create_model`.
      key: the initialisation key (its own stream, independent of synthesis and data order).

    Returns:
      A :class:`TrainState` at step 0.
    """
    dummy = jnp.zeros(model_input_shape(config), jnp.float32)
    kwargs = {"train": False} if config.model == "draem" else {}
    # One compiled program instead of hundreds of eagerly dispatched (and compiled) ops.
    variables = jax.jit(functools.partial(model.init, **kwargs))(key, dummy)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=create_optimizer(config),
        batch_stats=variables.get("batch_stats", {}),
    )


def count_params(params: Any) -> int:
    """Total number of parameters in a pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
