"""Running a ``.jaxexport`` file with JAX and NumPy only (no Flax, no Pillow, no model code).

:func:`load` returns an :class:`ExportedDetector` that accepts what
:class:`~sspcab_jax.detector.Detector` accepts for arrays and returns the same
:class:`~sspcab_jax.detector.Prediction`. Input checks and channel handling are the detector's
own NumPy functions; resizing (Pillow's bilinear filter, as the detector and the evaluation
pipeline use) is :mod:`sspcab_jax.export.resize`, the same arithmetic in ``jax.numpy``; so
results match the in-process detector. (File paths, which the detector also accepts, are
decoded with Pillow.)
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from sspcab_jax.detector import inputs
from sspcab_jax.detector.detector import batch_slices
from sspcab_jax.detector.prediction import Prediction
from sspcab_jax.export import artifact
from sspcab_jax.export.lower import below_or_equal_f32
from sspcab_jax.export.resize import resize_float, resize_uint8


def current_platform() -> str:
    """The default backend as ``jax.export`` names platforms (``'cpu'``, ``'cuda'``, ...)."""
    device = jax.devices()[0]
    if device.platform == "gpu":
        return "rocm" if "rocm" in device.client.platform_version.lower() else "cuda"
    return device.platform


def _deserialize(blobs: dict[str, bytes], platforms: list[str], where: str) -> dict[str, Any]:
    here = current_platform()
    if here not in platforms:
        raise ValueError(
            f"{where} was exported for {platforms} but this machine runs JAX on {here!r}; "
            f"re-export with --platforms={','.join([*platforms, here])}."
        )
    return {dtype: jax.jit(jax.export.deserialize(bytearray(b)).call) for dtype, b in blobs.items()}


class ExportedNetwork:
    """A bare exported network: ``images float32 [N, H, W, C]`` at its input size -> outputs."""

    def __init__(self, metadata: dict[str, Any], entries: dict[str, bytes], weights, where: str):
        self.metadata = metadata
        self.image_size = tuple(metadata["image_size"])
        self.channels = metadata["channels"]
        self._call = _deserialize(entries, metadata["platforms"], where)["float32"]
        self._weights = [jax.device_put(w) for w in weights]

    def __call__(self, images) -> tuple[np.ndarray, ...]:
        """Runs the network; returns its outputs (``metadata['outputs']`` names them) as NumPy."""
        array = np.asarray(images)
        expected = (*self.image_size, self.channels)
        if array.ndim != 4 or array.shape[1:] != expected or array.shape[0] == 0:
            raise ValueError(
                f"Expected float images [N, {', '.join(map(str, expected))}], got shape "
                f"{array.shape}."
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"Expected float32 images in [0, 1], got dtype {array.dtype}.")
        outputs = self._call(self._weights, array.astype(np.float32))
        return tuple(np.asarray(x) for x in outputs)


class ExportedDetector:
    """Calls an exported detector like a :class:`~sspcab_jax.detector.Detector` on arrays.

    Attributes:
      metadata: the artifact's ``metadata.json`` (thresholds, versions, platforms, ...).
      image_size: the model's input ``(height, width)``.
      channels: the model's input channels.
      tiling: None, or for a tiled detector its ``tile_size``, ``tile_overlap``, the
        ``input_size`` it was exported for and that size in model pixels (``tiled_size``).
    """

    def __init__(
        self, metadata: dict[str, Any], entries: dict[str, bytes], weights, where: str, batch_size
    ):
        self.metadata = metadata
        self.image_size = tuple(metadata["image_size"])
        self.channels = metadata["channels"]
        self.batch_size = batch_size
        self.pixel_threshold = metadata["thresholds"]["pixel"]
        self.tiling = metadata.get("tiling")
        self._calls = _deserialize(entries, metadata["platforms"], where)
        self._weights = [jax.device_put(w) for w in weights]

    def _expected(self) -> str:
        h, w = self.image_size
        sizes = f"any H, W; resized to {h}x{w}"
        if self.tiling:
            th, tw = self.tiling["tile_size"]
            ih, iw = self.tiling["input_size"]
            sizes = f"{ih}x{iw} (tiled), or smaller than a {th}x{tw} tile (resized to {h}x{w})"
        return (
            f"this detector takes uint8 (0-255) or float (0-1) images [H, W, {self.channels}] or "
            f"[N, H, W, {self.channels}] ({sizes}; 1 or 3 channels)"
        )

    def _entry_and_size(self, shape: tuple[int, ...]) -> tuple[str, tuple[int, int]]:
        """``(entry prefix, model-pixel size)`` for an image of ``shape``, as the detector picks."""
        if self.tiling is None or any(
            s < t for s, t in zip(shape[:2], self.tiling["tile_size"], strict=True)
        ):
            return "", self.image_size
        if list(shape[:2]) != self.tiling["input_size"]:
            raise ValueError(
                f"image of size {shape[0]}x{shape[1]}: {self._expected()}; re-export with "
                f"--input_size={shape[0]},{shape[1]} for this size."
            )
        return "tiled_", tuple(self.tiling["tiled_size"])

    def _to_entry(self, image: np.ndarray) -> tuple[str, np.ndarray]:
        """``(entry name, image at the entry's size and the model's channels, RGB order)``."""
        prefix, size = self._entry_and_size(image.shape)
        if image.dtype == np.uint8 and (image.shape[-1] == self.channels or self.channels == 3):
            if image.shape[:2] != size:
                image = np.asarray(resize_uint8(image, size))
            return prefix + "uint8", np.repeat(image, self.channels // image.shape[-1], axis=-1)
        return prefix + "float32", inputs.match_channels(
            _to_float(image, size), self.channels, "rgb"
        )

    def _run(self, dtype: str, batch: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        rows = []
        for start, stop, padded in batch_slices(len(batch), self.batch_size):
            chunk = batch[start:stop]
            if len(chunk) < padded:
                filler = np.zeros((padded - len(chunk),) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, filler])
            outputs = [np.asarray(x) for x in self._calls[dtype](self._weights, chunk)]
            rows += list(zip(*(x[: stop - start] for x in outputs), strict=True))
        return rows

    def __call__(self, images) -> Prediction:
        """Scores one image ``[H, W(, C)]``, a batch ``[N, H, W, C]`` or a list of images.

        Raises:
          ValueError: a shape, dtype or value the detector does not take; the message names the
            expected shape.
        """
        try:
            items, is_list = inputs.collect_images(images)
            items = [inputs.check_values(img, f"image {i}") for i, img in enumerate(items)]
        except ValueError as error:
            raise ValueError(f"{str(error).rstrip('.')}; {self._expected()}.") from error
        prepared = [self._to_entry(img) for img in items]
        rows: list[Any] = [None] * len(items)
        for dtype in sorted(self._calls):
            indices = [i for i, (d, _) in enumerate(prepared) if d == dtype]
            if indices:
                batch = np.stack([prepared[i][1] for i in indices])
                for i, row in zip(indices, self._run(dtype, batch), strict=True):
                    rows[i] = row
        return self._predict(items, rows, is_list)

    def _predict(self, items, rows, is_list: bool) -> Prediction:
        calibrated = len(rows[0]) == 5
        maps, masks = [], []
        for image, row in zip(items, rows, strict=True):
            amap = row[0]
            if image.shape[:2] == amap.shape:
                maps.append(amap)
                masks.append(row[4] if calibrated else None)
            else:  # the detector thresholds the map at the image's size
                amap = np.asarray(resize_float(amap, image.shape[:2]))
                maps.append(amap)
                if calibrated:  # float32 > float32(t) rounded down == float64 comparison
                    masks.append(amap > below_or_equal_f32(self.pixel_threshold))
        column = lambda k: np.asarray([row[k] for row in rows])  # noqa: E731
        score = column(1).astype(np.float32)
        normalized = column(2).astype(np.float32) if calibrated else None
        verdict = column(3).astype(bool) if calibrated else None
        if not is_list:
            maps = np.stack(maps)
            masks = np.stack(masks) if calibrated else None
        elif not calibrated:
            masks = None
        return Prediction(maps, score, normalized, verdict, masks)


def _to_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``inputs.resize_to_float`` without Pillow: float32 ``[H, W, C]`` in [0, 1] of ``size``."""
    if image.shape[:2] != tuple(size):
        if image.dtype == np.uint8:
            image = np.asarray(resize_uint8(image, size))
        else:  # channel planes, as the detector resizes float images
            planes = resize_float(np.moveaxis(image, -1, 0), size)
            image = np.clip(np.moveaxis(np.asarray(planes), 0, -1), 0.0, 1.0)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def load(path: str | os.PathLike, *, batch_size: int = 16) -> ExportedDetector | ExportedNetwork:
    """Loads a ``.jaxexport`` file written by :func:`sspcab_jax.export.export_detector`.

    Args:
      path: the file.
      batch_size: images per call of the artifact (the last chunk is padded to a power of two,
        so few batch shapes are compiled).

    Returns:
      An :class:`ExportedDetector` (kind ``'detector'``) or :class:`ExportedNetwork`.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not an export, an unsupported format version, or exported for other platforms.
    """
    metadata, entries, weights = artifact.read(path)
    if metadata["kind"] == "network":
        return ExportedNetwork(metadata, entries, weights, str(path))
    return ExportedDetector(metadata, entries, weights, str(path), batch_size)
