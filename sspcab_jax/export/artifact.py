"""The ``.jaxexport`` container: one zip file (stored, not compressed).

It holds:

* ``metadata.json``: what the artifact is (see :func:`check_metadata` for the fields);
* ``entries/<name>.jaxexport``: serialized :class:`jax.export.Exported` functions, one per input
  dtype (``uint8``, ``float32``; a tiled detector adds ``tiled_uint8``, ``tiled_float32``), each
  ``f(weights, images [N, H, W, C])`` with a symbolic batch dimension ``N``;
* ``weights/<i>.npy``: the model's weights, the flat list passed as ``weights`` (NumPy format,
  readable by any language). They are arguments rather than constants so that the two entries
  share one copy.

Only the standard library, NumPy and JAX are needed to read it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "sspcab_jax.export"
FORMAT_VERSION = 1
KINDS = ("detector", "network")
METADATA = "metadata.json"


def entry_name(dtype: str) -> str:
    """Member holding the serialized function for ``dtype`` inputs."""
    return f"entries/{dtype}.jaxexport"


def write(
    path: str | os.PathLike,
    metadata: dict[str, Any],
    entries: dict[str, bytes],
    weights: list[np.ndarray],
) -> Path:
    """Writes the container; returns its path."""
    target = Path(path)
    metadata = dict(metadata, entries=sorted(entries), num_weights=len(weights))
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        for dtype, blob in entries.items():
            archive.writestr(entry_name(dtype), bytes(blob))
        for i, leaf in enumerate(weights):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(leaf), allow_pickle=False)
            archive.writestr(f"weights/{i:05d}.npy", buffer.getvalue())
    return target


def check_metadata(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    """Raises ValueError unless ``metadata`` is this format at a version this library reads."""
    if metadata.get("format") != FORMAT:
        found = metadata.get("format")
        raise ValueError(f"{where} is not an sspcab_jax export (format {found!r}).")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} has export format version {version!r}; this sspcab_jax reads version "
            f"{FORMAT_VERSION}. Re-export it with `python -m train.export` of this version."
        )
    if metadata.get("kind") not in KINDS:
        raise ValueError(f"{where}: unknown artifact kind {metadata.get('kind')!r}.")
    return metadata


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, bytes], list[np.ndarray]]:
    """``(metadata, {dtype: serialized function}, weights)`` of a container.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not a container of this format, or an unsupported format version.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"No exported detector at {source}; run `python -m train.export`.")
    if not zipfile.is_zipfile(source):
        raise ValueError(f"{source} is not an sspcab_jax export (not a zip container).")
    with zipfile.ZipFile(source) as archive:
        try:
            metadata = json.loads(archive.read(METADATA))
        except KeyError as error:
            raise ValueError(f"{source} is not an sspcab_jax export (no {METADATA}).") from error
        check_metadata(metadata, str(source))
        entries = {dtype: archive.read(entry_name(dtype)) for dtype in metadata["entries"]}
        weights = [
            np.lib.format.read_array(io.BytesIO(archive.read(f"weights/{i:05d}.npy")))
            for i in range(metadata["num_weights"])
        ]
    return metadata, entries, weights
