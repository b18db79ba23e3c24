"""One-call inference: images in, calibrated verdicts and maps at each image's resolution out."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from sspcab_jax.detector import inputs
from sspcab_jax.detector.calibration import Calibration
from sspcab_jax.detector.prediction import Prediction
from sspcab_jax.detector.tiling import tiled_inference

Size = int | tuple[int, int]
ModelFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
ScoreFn = Callable[[jax.Array], jax.Array]


def _hw(size: Size, name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}.")
    return pair


def batch_slices(count: int, batch_size: int) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, padded)`` chunks of ``count`` items.

    Full chunks have ``batch_size`` items; the remainder is padded up to the next power of two
    (at most ``batch_size``), so at most ``log2(batch_size) + 2`` batch shapes are ever compiled.
    """
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        padded = min(batch_size, 1 << math.ceil(math.log2(stop - start)))
        yield start, stop, padded


def _run_padded(fn, batch: np.ndarray, padded: int) -> tuple[np.ndarray, np.ndarray]:
    n = batch.shape[0]
    if n < padded:
        filler = np.zeros((padded - batch.shape[0],) + batch.shape[1:], batch.dtype)
        batch = np.concatenate([batch, filler])
    amap, score = fn(batch)
    return np.asarray(amap)[:n], np.asarray(score)[:n]


class Detector:
    """Anomaly detector around a jit-able inference function and a calibration.

    Every input is checked, converted to the model's channels (``'bgr'`` reverses RGB for
    models trained on BGR, grayscale models get luma) and either resized to the model's input
    size (``tile_size=None``) or, if at least one tile large, cut into overlapping tiles that go
    through the network in one jitted call and are stitched back (see
    :mod:`sspcab_jax.detector.tiling`). Maps are returned at each image's own resolution.

    With ``tile_size`` set, the image is first scaled by ``image_size / tile_size`` (so a tile
    becomes exactly one model input), tiled, and the stitched map scaled back; an image smaller
    than one tile is resized like an untiled one. The image score of a tiled image is
    ``score_fn`` of its stitched map; otherwise it is the model's own score.

    Compilation: one jitted function per input batch shape. Batches are cut into chunks of
    ``batch_size`` images, the last one padded (see :func:`batch_slices`), so repeated calls
    reuse the compiled functions.
    """

    def __init__(
        self,
        model_fn: ModelFn,
        image_size: Size,
        calibration: Calibration | None = None,
        *,
        channels: int = 3,
        input_channel_order: str = "rgb",
        tile_size: Size | None = None,
        tile_overlap: int = 0,
        batch_size: int = 16,
        score_fn: ScoreFn | None = None,
        variables: Any = None,
    ):
        """Builds a detector.

        Args:
          model_fn: ``images [B, H, W, channels]`` float32 in [0, 1] -> ``(anomaly_map
            [B, H, W], score [B])``, variables bound, jit-able.
          image_size: the model's input ``(height, width)`` (or one int).
          calibration: thresholds and normalisation; None (or unavailable) gives maps and raw
            scores only.
          channels: model input channels, 1 (grayscale) or 3.
          input_channel_order: ``'rgb'`` or ``'bgr'`` (channel order the model was trained on).
          tile_size: None (resize each image to ``image_size``) or the tile side(s) in image
            pixels.
          tile_overlap: pixels shared by neighbouring tiles, in image pixels.
          batch_size: images per network call (tiles per network call when tiling).
          score_fn: the model's image-score rule ``map [N, H, W] -> [N]``; required for tiling.
          variables: optional pytree (e.g. the model's variables); when given, ``model_fn`` is
            called as ``model_fn(variables, images)`` and the variables are passed to the
            compiled function as arguments instead of being baked into it as constants
            (faster compilation, one copy in memory for large models).
        """
        self.image_size = _hw(image_size, "image_size")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        if input_channel_order not in inputs.CHANNEL_ORDERS:
            raise ValueError(
                f"input_channel_order must be one of {inputs.CHANNEL_ORDERS}, got "
                f"{input_channel_order!r}."
            )
        if input_channel_order == "bgr" and channels != 3:
            raise ValueError("input_channel_order='bgr' needs a 3-channel model.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.channels = channels
        self.channel_order = input_channel_order
        self.batch_size = batch_size
        self.calibration = calibration
        self.score_fn = score_fn
        self.tile_size = None if tile_size is None else _hw(tile_size, "tile_size")
        self.tile_overlap = int(tile_overlap)
        if variables is None:

            def apply(_, images):
                return model_fn(images)

        else:
            apply = model_fn
        self._variables = variables
        self._forward = jax.jit(apply)
        self._tiled = None
        if self.tile_size is not None:
            if score_fn is None:
                raise ValueError(
                    "Tiling needs score_fn, the model's image-score rule map [N, H, W] -> [N] "
                    "(DRAEM: functools.partial(sspcab_jax.models.image_score, mode='mean_filter'))."
                )
            if not 0 <= self.tile_overlap < min(self.tile_size):
                raise ValueError(
                    f"tile_overlap must be in [0, tile_size), got {tile_overlap} for tile size "
                    f"{self.tile_size}."
                )
            scale = [m / t for m, t in zip(self.image_size, self.tile_size, strict=True)]
            overlap = tuple(round(self.tile_overlap * s) for s in scale)
            if min(m - o for m, o in zip(self.image_size, overlap, strict=True)) < 1:
                raise ValueError("tile_overlap leaves no stride at the model's input size.")

            def tiled(bound, images):
                return tiled_inference(
                    functools.partial(apply, bound),
                    score_fn,
                    images,
                    self.image_size,
                    overlap,
                    batch_size,
                )

            self._tiled = jax.jit(tiled)

    @classmethod
    def from_flax(
        cls,
        model: Any,
        variables: Mapping[str, Any],
        calibration: Calibration | None,
        image_size: Size,
        *,
        score_mode: str = "mean_filter",
        **kwargs,
    ) -> Detector:
        """A detector for a built-in Flax model and its variables.

        Built-in: :class:`~sspcab_jax.models.Draem` and
        :class:`~sspcab_jax.models.ConvAutoencoder`; other models use :meth:`from_eval_step`.

        Args:
          model: the module.
          variables: its variables (``params``, and ``batch_stats`` for DRAEM).
          calibration: see :class:`Detector`.
          image_size: the model's input size.
          score_mode: DRAEM's image-score rule (``'mean_filter'`` or ``'max'``).
          **kwargs: other :class:`Detector` arguments (tiling, batch size, channel order).
        """
        # Imported here so that the detector itself does not need Flax or the model code.
        from sspcab_jax.detector.families import family_pieces

        apply, score_fn, channels, bound = family_pieces(model, variables, score_mode)
        kwargs.setdefault("channels", channels)
        return cls(apply, image_size, calibration, score_fn=score_fn, variables=bound, **kwargs)

    @classmethod
    def from_eval_step(
        cls,
        eval_step: Callable[[Any, Any], Mapping[str, Any]],
        state: Any,
        calibration: Calibration | None,
        image_size: Size,
        **kwargs,
    ) -> Detector:
        """A detector from a training-style evaluation step.

        Args:
          eval_step: ``(state, images [B, H, W, C]) -> {'anomaly_map': [B, H, W], 'score':
            [B], ...}``.
          state: what ``eval_step`` takes first (a train state or variables); bound here.
          calibration: see :class:`Detector`.
          image_size: the model's input size.
          **kwargs: other :class:`Detector` arguments (``score_fn`` for tiling, ``channels``).
        """

        def apply(bound, images):
            out = eval_step(bound, images)
            return out["anomaly_map"], out["score"]

        return cls(apply, image_size, calibration, variables=state, **kwargs)

    @classmethod
    def from_workdir(
        cls,
        workdir: str,
        which: str = "best",
        tile_size: Size | None = None,
        tile_overlap: int = 0,
        **kwargs,
    ) -> Detector:
        """The detector of a finished training run (DRAEM or image auto-encoder).

        Restores the run's config and state (``which``: ``'best'`` or ``'latest'``
        checkpoint), takes the eval step, input size, channels and image-score rule from the
        run's task, and loads its calibration: ``<workdir>/calibration.json``, else the copy
        stored in the restored checkpoint (preferring one made for this step and this tiling;
        another tiling's thresholds are on another scale and give a warning naming
        ``train.calibrate --tile_size``). Without either the detector is uncalibrated (no
        verdicts; ``calibration.note`` says how to calibrate).

        Args:
          workdir: the training run's directory.
          which: ``'best'`` or ``'latest'``.
          tile_size: see :class:`Detector`.
          tile_overlap: see :class:`Detector`.
          **kwargs: other :class:`Detector` arguments (batch size).

        Returns:
          The detector; ``detector.step`` is the restored training step and
          ``detector.config`` the run's config.
        """
        from sspcab_jax.detector.from_run import detector_kwargs

        parts = detector_kwargs(workdir, which, tile_size, tile_overlap)
        loaded = parts.pop("loaded")
        detector = cls.from_eval_step(
            **parts, tile_size=tile_size, tile_overlap=tile_overlap, **kwargs
        )
        detector.step, detector.config = loaded.step, loaded.config
        return detector

    def inference(self, tiled: bool = False) -> tuple[Callable[[Any, jax.Array], Any], Any]:
        """``(fn, variables)`` of one network call, for exporting.

        ``fn(variables, images [B, H, W, channels])`` takes float32 in [0, 1] in the model's
        channel order and returns ``(anomaly_map [B, H, W], score [B])``; jit-able. Untiled:
        ``(H, W)`` is ``image_size``. Tiled (``tiled=True``, needs ``tile_size``): ``(H, W)`` is
        :meth:`tiled_model_size` of the image, and the maps are the stitched ones.
        """
        if tiled:
            if self._tiled is None:
                raise ValueError("This detector has no tile_size; build it with tile_size=...")
            return self._tiled, self._variables
        return self._forward, self._variables

    def _to_model(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        resized = inputs.resize_to_float(image, size)
        return inputs.match_channels(resized, self.channels, self.channel_order)

    def tiled_model_size(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """Model-pixel ``(H, W)`` an image of ``shape`` is tiled at; None when untiled.

        None when the detector has no ``tile_size`` or the image is smaller than one tile (it
        is then resized to ``image_size``).
        """
        if self.tile_size is None or shape[0] < self.tile_size[0] or shape[1] < self.tile_size[1]:
            return None
        return tuple(
            max(m, round(s * m / t))
            for s, m, t in zip(shape[:2], self.image_size, self.tile_size, strict=True)
        )

    def _run(self, fn, images: list[np.ndarray], size) -> list[tuple[np.ndarray, float]]:
        results = []
        for start, stop, padded in batch_slices(len(images), self.batch_size):
            batch = np.stack([self._to_model(img, size) for img in images[start:stop]])
            maps, scores = _run_padded(functools.partial(fn, self._variables), batch, padded)
            results += list(zip(maps, scores, strict=True))
        return results

    def __call__(self, images) -> Prediction:
        """Scores images.

        Args:
          images: one image ``[H, W]`` / ``[H, W, C]``, a batch ``[N, H, W, C]`` (NumPy or JAX;
            ``uint8`` 0-255 or float in [0, 1]; C = 1 or 3), a file path, or a list of images
            or paths of any sizes.

        Returns:
          A :class:`Prediction` (stacked arrays for array input, lists of maps for list input).

        Raises:
          ValueError: wrong rank or channel count, empty input, values out of range, NaN
            pixels, an unreadable file.
        """
        items, is_list = inputs.collect_images(images)
        items = [inputs.check_values(img, f"image {i}") for i, img in enumerate(items)]
        groups: dict[Any, list[int]] = {}
        for i, img in enumerate(items):
            tiled = self.tiled_model_size(img.shape)
            key = ("tiled", img.shape[:2], tiled) if tiled else ("resized", None, self.image_size)
            groups.setdefault(key, []).append(i)
        maps: list[np.ndarray] = [np.empty(0)] * len(items)
        scores = np.zeros(len(items), np.float32)
        for (mode, _, size), indices in groups.items():
            fn = self._tiled if mode == "tiled" else self._forward
            for i, (amap, score) in zip(
                indices, self._run(fn, [items[i] for i in indices], size), strict=True
            ):
                maps[i] = inputs.resize_map(amap, items[i].shape[:2])
                scores[i] = score
        return self._predict(maps, scores, is_list)

    def _predict(self, maps: list[np.ndarray], scores: np.ndarray, is_list: bool) -> Prediction:
        cal = self.calibration
        if cal is None or not cal.available:
            normalized = verdict = masks = None
        else:
            normalized, verdict = cal.normalize_scores(scores), cal.is_anomalous(scores)
            masks = [cal.defect_mask(m) for m in maps]
        if not is_list:
            maps = np.stack(maps)
            masks = None if masks is None else np.stack(masks)
        return Prediction(maps, scores, normalized, verdict, masks)
