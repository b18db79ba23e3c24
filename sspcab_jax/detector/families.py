"""Inference closures and image-score rules of the built-in model families.

A detector needs ``model_fn(images [B, H, W, C] in [0, 1]) -> (anomaly_map [B, H, W],
score [B])`` with the variables bound, and, for tiling, the family's score rule
``score_fn(map [N, H, W]) -> [N]``. These build both for :class:`~sspcab_jax.models.Draem` and
:class:`~sspcab_jax.models.ConvAutoencoder`; any other model passes its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.detector.detector import ModelFn, ScoreFn
from sspcab_jax.models import (
    ConvAutoencoder,
    Draem,
    anomaly_map,
    image_score,
    reconstruction_error_map,
)

Array = jax.Array

# Collections inference reads; others (e.g. sown SSPCAB losses from ``init``) are dropped.
_INFERENCE_COLLECTIONS = ("params", "batch_stats")


def inference_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Keeps the ``params`` and ``batch_stats`` collections of a variables dict."""
    kept = {k: variables[k] for k in _INFERENCE_COLLECTIONS if k in variables}
    if "params" not in kept:
        raise ValueError(f"variables need a 'params' collection, got {sorted(variables)}.")
    return kept


def mean_score(amap: Array) -> Array:
    """Mean of each map, ``[N, H, W] -> [N]`` (the auto-encoder's image score)."""
    return jnp.mean(amap.astype(jnp.float32), axis=(1, 2))


def draem_pieces(
    model: Draem, variables: Mapping[str, Any], score_mode: str = "mean_filter"
) -> tuple[ModelFn, ScoreFn]:
    """``(model_fn, score_fn)`` of DRAEM: softmax anomaly map, :func:`image_score` rule."""
    bound = inference_variables(variables)
    score_fn = functools.partial(image_score, mode=score_mode)

    def model_fn(images: Array) -> tuple[Array, Array]:
        _, logits = model.apply(bound, images, train=False)
        amap = anomaly_map(logits)
        return amap, score_fn(amap)

    return model_fn, score_fn


def autoencoder_pieces(
    model: ConvAutoencoder, variables: Mapping[str, Any]
) -> tuple[ModelFn, ScoreFn]:
    """``(model_fn, score_fn)`` of the auto-encoder: squared-error map, its mean as score."""
    bound = inference_variables(variables)

    def model_fn(images: Array) -> tuple[Array, Array]:
        amap = reconstruction_error_map(model.apply(bound, images), images)
        return amap, mean_score(amap)

    return model_fn, mean_score


def family_pieces(
    model: nn.Module, variables: Mapping[str, Any], score_mode: str = "mean_filter"
) -> tuple[ModelFn, ScoreFn, int]:
    """``(model_fn, score_fn, channels)`` for a built-in model; TypeError for others."""
    if isinstance(model, Draem):
        return (*draem_pieces(model, variables, score_mode), model.in_channels)
    if isinstance(model, ConvAutoencoder):
        return (*autoencoder_pieces(model, variables), model.channels)
    raise TypeError(
        f"No built-in inference for {type(model).__name__}; pass eval_step= and score_fn= "
        "(see Detector.from_eval_step)."
    )
