"""Inference closures and image-score rules of the built-in model families.

A detector needs ``apply(variables, images [B, H, W, C] in [0, 1]) -> (anomaly_map [B, H, W],
score [B])`` and, for tiling, the family's score rule ``score_fn(map [N, H, W]) -> [N]``.
These build both for :class:`~sspcab_jax.models.Draem` and
:class:`~sspcab_jax.models.ConvAutoencoder`; any other model passes its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.detector.detector import ScoreFn
from sspcab_jax.models import (
    ConvAutoencoder,
    Draem,
    anomaly_map,
    image_score,
    reconstruction_error_map,
)

Array = jax.Array
ApplyFn = Callable[[Any, Array], tuple[Array, Array]]

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


def draem_pieces(model: Draem, score_mode: str = "mean_filter") -> tuple[ApplyFn, ScoreFn]:
    """``(apply, score_fn)`` of DRAEM: softmax anomaly map, :func:`image_score` rule."""
    score_fn = functools.partial(image_score, mode=score_mode)

    def apply(variables, images: Array) -> tuple[Array, Array]:
        _, logits = model.apply(variables, images, train=False)
        amap = anomaly_map(logits)
        return amap, score_fn(amap)

    return apply, score_fn


def autoencoder_pieces(model: ConvAutoencoder) -> tuple[ApplyFn, ScoreFn]:
    """``(apply, score_fn)`` of the auto-encoder: squared-error map, its mean as score."""

    def apply(variables, images: Array) -> tuple[Array, Array]:
        amap = reconstruction_error_map(model.apply(variables, images), images)
        return amap, mean_score(amap)

    return apply, mean_score


def family_pieces(
    model: nn.Module, variables: Mapping[str, Any], score_mode: str = "mean_filter"
) -> tuple[ApplyFn, ScoreFn, int, dict[str, Any]]:
    """``(apply, score_fn, channels, inference variables)`` for a built-in model.

    Raises:
      TypeError: the model is not a built-in family.
    """
    if isinstance(model, Draem):
        apply, score_fn = draem_pieces(model, score_mode)
        return apply, score_fn, model.in_channels, inference_variables(variables)
    if isinstance(model, ConvAutoencoder):
        apply, score_fn = autoencoder_pieces(model)
        return apply, score_fn, model.channels, inference_variables(variables)
    raise TypeError(
        f"No built-in inference for {type(model).__name__}; pass eval_step= and score_fn= "
        "(see Detector.from_eval_step)."
    )
