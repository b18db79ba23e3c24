"""Pure train and eval steps for DRAEM and the plain auto-encoder.

Every step is a pure function of its arguments; :mod:`sspcab_jax.training.parallel` wraps the same
function for one device (``jit``), ``pmap`` and a device mesh. Under ``pmap`` pass
``axis_name``: gradients, loss terms and (through the model's ``bn_axis_name``) BatchNorm
statistics are averaged over the device axis, so every mode computes the same update for the same
global batch and key.

Randomness: the step folds ``state.step`` into the key it is given, so a caller passes one fixed
key for the whole run and a resumed run draws exactly what an uninterrupted one would. Each sample
of the global batch gets the key ``split(step_key, global_batch)[i]``, whichever device holds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers import SSPCAB_LOSS_COLLECTION, self_supervised_loss
from sspcab_jax.losses import draem_loss, l2_loss
from sspcab_jax.models import anomaly_map, image_score, reconstruction_error_map
from sspcab_jax.synthesis.draem import SynthesisConfig, synthesize_from_keys
from sspcab_jax.training.state import TrainState

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]
TrainStep = Callable[..., tuple[TrainState, Metrics]]


def sample_keys(step_key: Array, local_batch: int, axis_name: str | None) -> Array:
    """Per-sample keys of this device's share of the global batch.

    Args:
      step_key: key of the current step (same on every device).
      local_batch: samples on this device.
      axis_name: the ``pmap`` axis, or None when the whole global batch is in one array.

    Returns:
      ``[local_batch]`` keys: rows ``[i * local_batch, (i + 1) * local_batch)`` of
      ``split(step_key, global_batch)`` on device ``i``.
    """
    if axis_name is None:
        return jax.random.split(step_key, local_batch)
    devices = jax.lax.axis_size(axis_name)
    keys = jax.random.split(step_key, local_batch * devices)
    start = jax.lax.axis_index(axis_name) * local_batch
    return jax.lax.dynamic_slice_in_dim(keys, start, local_batch)


def _mean_over_devices(tree: Any, axis_name: str | None) -> Any:
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def draem_loss_fn(
    params: Any,
    batch_stats: Any,
    synth: Batch,
    *,
    model: nn.Module,
    sspcab_lambda: float = 0.1,
    focal: str = "probs",
    axis_name: str | None = None,
) -> tuple[Array, tuple[Metrics, Any]]:
    """DRAEM's training loss on a synthesised batch; :func:`draem_train_step` differentiates it.

    The network sees the augmented images; the reconstruction is compared with the clean ones
    and the logits with the mask (``train_DRAEM.py``); BatchNorm uses batch statistics.

    Args:
      params: the model's parameters (differentiated).
      batch_stats: BatchNorm running statistics.
      synth: ``{'augmented': [B, H, W, 3], 'image': [B, H, W, 3], 'mask': [B, H, W, 1]}``:
        network input, clean target and anomaly mask (as from :func:`synthesize_from_keys`).
      model: a :class:`~sspcab_jax.models.Draem`.
      sspcab_lambda: weight of the SSPCAB self-supervised loss.
      focal: ``'probs'`` (official) or ``'logits'`` (anomalib) focal loss.
      axis_name: ``pmap`` axis name, or None.

    Returns:
      ``(total, (terms, new_batch_stats))``: the scalar loss, the float32 terms ``l2``, ``ssim``,
      ``focal``, ``sspcab`` (unweighted) and ``total``, and the updated running statistics.
    """
    (rec, logits), mutated = model.apply(
        {"params": params, "batch_stats": batch_stats},
        synth["augmented"],
        train=True,
        mutable=["batch_stats", SSPCAB_LOSS_COLLECTION],
    )
    terms = draem_loss(
        rec,
        synth["image"],
        logits,
        synth["mask"],
        sspcab_loss=self_supervised_loss(mutated),
        sspcab_lambda=sspcab_lambda,
        focal=focal,
        axis_name=axis_name,
    )
    return terms["total"], (terms, mutated["batch_stats"])


def draem_train_step(
    state: TrainState,
    batch: Batch,
    key: Array,
    sources: Array | None,
    *,
    model: nn.Module,
    synthesis: SynthesisConfig,
    sspcab_lambda: float = 0.1,
    focal: str = "probs",
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One DRAEM optimisation step with anomaly synthesis on the device.

    Args:
      state: current state.
      batch: ``{'image': [B, H, W, 3]}`` clean normal images in [0, 1] (this device's share).
      key: the run's synthesis key (the step is folded in here).
      sources: ``[S, H, W, 3]`` anomaly-source textures, or None for Perlin textures.
      model: a :class:`~sspcab_jax.models.Draem` (``bn_axis_name=axis_name`` under ``pmap``).
      synthesis: anomaly synthesis configuration.
      sspcab_lambda: weight of the SSPCAB self-supervised loss.
      focal: ``'probs'`` (official) or ``'logits'`` (anomalib) focal loss.
      axis_name: ``pmap`` axis name, or None.

    Returns:
      ``(new_state, metrics)`` with float32 scalars ``l2``, ``ssim``, ``focal``, ``sspcab``,
      ``total`` and ``anomaly_fraction`` (share of synthesised anomalous samples).
    """
    step_key = jax.random.fold_in(key, state.step)
    keys = sample_keys(step_key, batch["image"].shape[0], axis_name)
    synth = synthesize_from_keys(keys, batch["image"], sources, config=synthesis)

    loss_fn = functools.partial(
        draem_loss_fn,
        batch_stats=state.batch_stats,
        synth=synth,
        model=model,
        sspcab_lambda=sspcab_lambda,
        focal=focal,
        axis_name=axis_name,
    )
    grads, (terms, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    grads = _mean_over_devices(grads, axis_name)
    terms = dict(terms, anomaly_fraction=jnp.mean(synth["has_anomaly"]))
    terms = _mean_over_devices(terms, axis_name)
    # Keep the running statistics' dtypes (BatchNorm may return them in the compute dtype):
    # a dtype change would make every following step compile again.
    batch_stats = jax.tree_util.tree_map(
        lambda new, old: new.astype(old.dtype), batch_stats, state.batch_stats
    )
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return new_state, terms


def autoencoder_train_step(
    state: TrainState,
    batch: Batch,
    key: Array,
    sources: Array | None = None,
    *,
    model: nn.Module,
    sspcab_lambda: float = 0.1,
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One auto-encoder step: reconstruction MSE + lambda * SSPCAB loss.

    Args:
      state: current state.
      batch: ``{'image': [B, H, W, C]}`` (``[B, T, H, W, C]`` for clips) in [0, 1].
      key: unused (the auto-encoder is deterministic); kept so every family shares one signature.
      sources: unused.
      model: a :class:`~sspcab_jax.models.ConvAutoencoder`.
      sspcab_lambda: weight of the SSPCAB self-supervised loss.
      axis_name: ``pmap`` axis name, or None.

    Returns:
      ``(new_state, metrics)`` with float32 scalars ``l2``, ``sspcab`` and ``total``.
    """
    del key, sources
    images = batch["image"]

    def loss_fn(params):
        rec, mutated = model.apply({"params": params}, images, mutable=[SSPCAB_LOSS_COLLECTION])
        terms = {"l2": l2_loss(rec, images), "sspcab": self_supervised_loss(mutated)}
        terms["total"] = terms["l2"] + sspcab_lambda * terms["sspcab"]
        return terms["total"], terms

    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params)
    grads = _mean_over_devices(grads, axis_name)
    terms = _mean_over_devices(terms, axis_name)
    return state.apply_gradients(grads=grads), terms


def draem_eval_step(
    state: TrainState, images: Array, *, model: nn.Module, score_mode: str = "mean_filter"
) -> dict[str, Array]:
    """DRAEM inference: pixel anomaly maps and image scores.

    Args:
      state: trained state.
      images: ``[B, H, W, 3]`` in [0, 1].
      model: the :class:`~sspcab_jax.models.Draem`.
      score_mode: ``'mean_filter'`` (official 21x21 mean filter, then max) or ``'max'``.

    Returns:
      ``{'anomaly_map': [B, H, W], 'score': [B], 'reconstruction': [B, H, W, 3]}``.
    """
    rec, logits = model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
    )
    amap = anomaly_map(logits)
    return {
        "anomaly_map": amap,
        "score": image_score(amap, mode=score_mode),
        "reconstruction": rec.astype(jnp.float32),
    }


def autoencoder_eval_step(
    state: TrainState, images: Array, *, model: nn.Module
) -> dict[str, Array]:
    """Auto-encoder inference: reconstruction-error maps and per-sample scores.

    Args:
      state: trained state.
      images: ``[B, H, W, C]`` (``[B, T, H, W, C]`` for clips) in [0, 1].
      model: the :class:`~sspcab_jax.models.ConvAutoencoder`.

    Returns:
      ``{'anomaly_map': [B, H, W], 'score': [B], 'reconstruction': images' shape}``; for clips
      the map and score are those of the last frame.
    """
    rec = model.apply({"params": state.params}, images)
    err = reconstruction_error_map(rec, images)
    if err.ndim == 4:  # [B, T, H, W]: clips are scored by their last frame
        err = err[:, -1]
    return {
        "anomaly_map": err,
        "score": jnp.mean(err, axis=(1, 2)),
        "reconstruction": rec.astype(jnp.float32),
    }
