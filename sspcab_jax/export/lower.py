"""Lowering a :class:`~sspcab_jax.detector.Detector` (or a bare network) to a ``.jaxexport`` file.

The exported detector function takes images at the model's input size in the caller's RGB
order (``uint8`` 0-255 or ``float32`` in [0, 1]) and runs, in one StableHLO computation, what
the detector runs per call: ``/ 255`` for ``uint8``, the channel flip of BGR-trained models, the
network, the model's scoring rule, the normalisation and the thresholds.

A tiled detector is exported for one image size (``input_size``): the tile grid, and so the
number of network calls, depends on the image size, which ``jax.export``'s symbolic shapes
cannot carry through the grid's Python arithmetic. Its ``tiled_*`` entries take images at the
model-pixel size of that image (:meth:`~sspcab_jax.detector.Detector.tiled_model_size`) and run
the tiling, the network on every tile, the stitching and the scoring, one image after another
(``lax.map``) so that the batch stays symbolic.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import sspcab_jax
from sspcab_jax.export import artifact

DEFAULT_PLATFORMS = ("cpu",)


def below_or_equal_f32(value: float) -> np.float32:
    """Largest float32 ``<= value``: for float32 ``s``, ``s > value`` iff ``s > this``."""
    rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return rounded


def normalize_f32(values: jax.Array, threshold: float, low: float, high: float) -> jax.Array:
    """``sspcab_jax.detector.thresholds.normalize`` in float32 JAX (verdicts exact)."""
    tiny = 1e-6 * max(1.0, abs(threshold))
    below = max(threshold - low, tiny)
    above = max(high - threshold, below)
    over = values > below_or_equal_f32(threshold)
    shifted = values - jnp.float32(threshold)
    scaled = jnp.where(over, shifted / jnp.float32(above), shifted / jnp.float32(below))
    out = 0.5 + 0.5 * jnp.clip(scaled, -1.0, 1.0)
    just_above = np.nextafter(np.float32(0.5), np.float32(1.0))
    return jnp.where(over, jnp.maximum(out, just_above), jnp.minimum(out, jnp.float32(0.5)))


def _platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.strip().lower() for p in platforms if p.strip()))
    unknown = sorted(set(chosen) - {"cpu", "cuda", "rocm", "tpu"})
    if not chosen or unknown:
        raise ValueError(f"platforms must be among cpu, cuda, rocm, tpu; got {list(platforms)}.")
    return chosen


def _lower(fn: Callable, leaves: list, image_shape: tuple[int, ...], dtype, platforms) -> bytes:
    (batch,) = jax.export.symbolic_shape("N")
    weight_specs = [jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)) for x in leaves]
    images = jax.ShapeDtypeStruct((batch, *image_shape), dtype)
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(weight_specs, images)
    return exported.serialize()


def _base_metadata(kind, image_size, channels, platforms, extra) -> dict[str, Any]:
    return {
        "format": artifact.FORMAT,
        "format_version": artifact.FORMAT_VERSION,
        "kind": kind,
        "image_size": list(image_size),
        "channels": channels,
        "platforms": list(platforms),
        "sspcab_jax_version": sspcab_jax.__version__,
        "jax_version": jax.__version__,
        **(extra or {}),
    }


def _one_by_one(tiled_fn: Callable) -> Callable:
    """``tiled_fn`` applied to each image of the batch in turn (the batch may be symbolic)."""

    def run(variables, images):
        def one(image):
            amap, score = tiled_fn(variables, image[None])
            return amap[0], score[0]

        return jax.lax.map(one, images)

    return run


def _tiling(detector, input_size) -> dict[str, Any] | None:
    if detector.tile_size is None:
        return None
    if input_size is None:
        raise ValueError(
            "A tiled detector is exported for one image size: pass input_size=(H, W) "
            "(train.export: --input_size=H,W), the size of the images it will score."
        )
    height, width = (int(v) for v in input_size)
    tiled_size = detector.tiled_model_size((height, width))
    if tiled_size is None:
        raise ValueError(
            f"input_size {height}x{width} is smaller than one tile {detector.tile_size}; "
            "export without tile_size (such images are resized to the model's input)."
        )
    return {
        "tile_size": list(detector.tile_size),
        "tile_overlap": detector.tile_overlap,
        "input_size": [height, width],
        "tiled_size": list(tiled_size),
    }


def export_detector(
    detector,
    path: str | os.PathLike,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    input_size: tuple[int, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``detector`` as a ``.jaxexport`` file (see :mod:`sspcab_jax.export.artifact`).

    Entries ``uint8`` and ``float32``: ``(weights, images [N, H, W, C]) -> (anomaly_map
    [N, H, W], score [N], normalized_score [N], is_anomalous [N], defect_mask [N, H, W])`` at
    the model's ``(H, W)`` and channels ``C``; without thresholds only the first two. A tiled
    detector adds ``tiled_uint8`` and ``tiled_float32`` with the same outputs at the
    model-pixel size of ``input_size`` (module docstring).

    Args:
      detector: a :class:`~sspcab_jax.detector.Detector`.
      path: the file to write.
      platforms: ``'cpu'``, ``'cuda'``, ``'rocm'``, ``'tpu'``; lowering needs no accelerator.
      input_size: ``(H, W)`` of the images a tiled detector will score (tiled detectors only).
      metadata: extra JSON-able fields stored with the artifact (e.g. the run's placement).

    Returns:
      The written file.

    Raises:
      ValueError: unknown platforms; a tiled detector without ``input_size``, or with one
        smaller than a tile.
    """
    platforms = _platforms(platforms)
    tiling = _tiling(detector, input_size)
    forward, variables = detector.inference()
    leaves, treedef = jax.tree.flatten(variables)
    cal = detector.calibration
    calibrated = cal is not None and cal.available
    flip = detector.channel_order == "bgr"

    def scored(network):
        def run(weights, images):
            x = images.astype(jnp.float32)
            if images.dtype == jnp.uint8:
                x = x / 255.0
            if flip:
                x = x[..., ::-1]
            amap, score = network(jax.tree.unflatten(treedef, weights), x)
            amap, score = amap.astype(jnp.float32), score.astype(jnp.float32)
            if not calibrated:
                return amap, score
            normalized = normalize_f32(score, cal.image_threshold, cal.image_min, cal.image_max)
            verdict = score > below_or_equal_f32(cal.image_threshold)
            mask = amap > below_or_equal_f32(cal.pixel_threshold)
            return amap, score, normalized, verdict, mask

        return run

    shape = (*detector.image_size, detector.channels)
    dtypes = ("uint8", "float32")
    entries = {d: _lower(scored(forward), leaves, shape, d, platforms) for d in dtypes}
    if tiling is not None:
        tiled = scored(_one_by_one(detector.inference(tiled=True)[0]))
        tiled_shape = (*tiling["tiled_size"], detector.channels)
        for d in dtypes:
            entries[f"tiled_{d}"] = _lower(tiled, leaves, tiled_shape, d, platforms)
    fields = _base_metadata("detector", detector.image_size, detector.channels, platforms, metadata)
    fields.update(
        tiling=tiling,
        channel_order=detector.channel_order,
        input_channel_order="rgb",
        calibration=None if cal is None else dataclasses.asdict(cal),
        thresholds={
            "image": cal.image_threshold if calibrated else None,
            "pixel": cal.pixel_threshold if calibrated else None,
        },
        outputs=["anomaly_map", "score"]
        + (["normalized_score", "is_anomalous", "defect_mask"] if calibrated else []),
    )
    return artifact.write(path, fields, entries, [np.asarray(x) for x in leaves])


def export_network(
    apply_fn: Callable[[Any, jax.Array], Any],
    variables: Any,
    image_size: tuple[int, int],
    channels: int,
    path: str | os.PathLike,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    outputs: Sequence[str] = ("reconstruction", "logits"),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a bare network ``apply_fn(variables, images float32 [N, H, W, C]) -> outputs``.

    For DRAEM: ``lambda v, x: model.apply(v, x, train=False)`` gives ``(reconstruction
    [N, H, W, C], logits [N, H, W, 2])``. No preprocessing, scoring or thresholds.
    """
    platforms = _platforms(platforms)
    leaves, treedef = jax.tree.flatten(variables)

    def run(weights, images):
        return apply_fn(jax.tree.unflatten(treedef, weights), images)

    shape = (*image_size, channels)
    entries = {"float32": _lower(run, leaves, shape, jnp.float32, platforms)}
    fields = _base_metadata("network", image_size, channels, platforms, metadata)
    fields["outputs"] = list(outputs)
    return artifact.write(path, fields, entries, [np.asarray(x) for x in leaves])
