"""Conversion of PyTorch SSPCAB weights (official ``sspcab_torch.py`` and anomalib's block)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

NAMINGS = ("official", "anomalib")

# The PyTorch blocks name their four corner convolutions by the crop each one sees. Official
# ``sspcab_torch.py``: conv1 top-left, conv2 bottom-left, conv3 top-right, conv4 bottom-right.
# anomalib ``components/layers/sspcab.py``: masked_conv1 top-left, masked_conv2 top-right,
# masked_conv3 bottom-left, masked_conv4 bottom-right. Our corner index is row-major over
# (rows: before/after, cols: before/after), i.e. TL, TR, BL, BR.
CORNER_CONVS = {
    "official": ("conv1", "conv3", "conv2", "conv4"),
    "anomalib": ("masked_conv1", "masked_conv2", "masked_conv3", "masked_conv4"),
}
ATTENTION = {"official": "se", "anomalib": "attention_module"}


def required_names(naming: str) -> tuple[str, ...]:
    """Every parameter name of one PyTorch SSPCAB block under ``naming``."""
    convs = sorted(CORNER_CONVS[naming])
    names = tuple(f"{c}.{p}" for c in convs for p in ("weight", "bias"))
    att = ATTENTION[naming]
    return names + tuple(f"{att}.{fc}.{p}" for fc in ("fc1", "fc2") for p in ("weight", "bias"))


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as float32 NumPy."""
    if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def sspcab_params_from_torch(
    state_dict: Mapping[str, Any], prefix: str = "", naming: str = "auto"
) -> dict:
    """Convert a PyTorch SSPCAB state dict into :class:`sspcab_jax.SSPCAB` params.

    Args:
      state_dict: mapping from PyTorch names to NumPy arrays or torch tensors in PyTorch layout
        (conv weights ``[C, C, k, k]``, linear weights ``[out, in]``). Official names:
        ``conv1.weight`` ... ``conv4.bias``, ``se.fc1.weight`` ... ``se.fc2.bias``; anomalib
        names: ``masked_conv1.weight`` ... ``masked_conv4.bias``,
        ``attention_module.fc1.weight`` ... ``attention_module.fc2.bias``.
      prefix: optional prefix of every name (e.g. ``"encoder.block5."`` inside a model).
      naming: ``'official'``, ``'anomalib'`` or ``'auto'`` (anomalib when
        ``prefix + 'masked_conv1.weight'`` is present).

    Returns:
      The ``params`` dict of an ``SSPCAB(kernel_size=k)`` with default attention and the corner
      formulation: ``{'masked_conv': {'kernel': [4, k, k, C, C], 'bias': [4, C]},
      'se': {'fc1': {...}, 'fc2': {...}}}``.

    Raises:
      ValueError: when a name is missing or the shapes do not fit together.
    """
    if naming == "auto":
        naming = "anomalib" if prefix + "masked_conv1.weight" in state_dict else "official"
    if naming not in NAMINGS:
        raise ValueError(f"naming must be 'auto' or one of {NAMINGS}, got {naming!r}.")
    required = required_names(naming)
    missing = [name for name in required if prefix + name not in state_dict]
    if missing:
        raise ValueError(
            f"state_dict lacks {missing}; expected the {naming} PyTorch SSPCAB names "
            f"{list(required)} (pass prefix= if they are nested in a model)."
        )

    def get(name: str) -> np.ndarray:
        return to_numpy(state_dict[prefix + name])

    kernels, biases = [], []
    for conv in CORNER_CONVS[naming]:
        weight = get(f"{conv}.weight")
        if (
            weight.ndim != 4
            or weight.shape[0] != weight.shape[1]
            or weight.shape[2] != weight.shape[3]
        ):
            raise ValueError(f"{prefix}{conv}.weight must be [C, C, k, k], got {weight.shape}.")
        kernels.append(weight.transpose(2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]
        biases.append(get(f"{conv}.bias"))
    shapes = {k.shape for k in kernels}
    if len(shapes) != 1:
        raise ValueError(f"the four corner convolutions differ in shape: {sorted(shapes)}.")
    channels = kernels[0].shape[-1]
    att = ATTENTION[naming]
    fc1_w, fc2_w = get(f"{att}.fc1.weight"), get(f"{att}.fc2.weight")
    if fc1_w.shape[1] != channels or fc2_w.shape[0] != channels:
        raise ValueError(
            f"squeeze-and-excitation weights {fc1_w.shape}, {fc2_w.shape} do not fit "
            f"{channels} channels."
        )
    return {
        "masked_conv": {"kernel": np.stack(kernels), "bias": np.stack(biases)},
        "se": {
            "fc1": {"kernel": fc1_w.T, "bias": get(f"{att}.fc1.bias")},
            "fc2": {"kernel": fc2_w.T, "bias": get(f"{att}.fc2.bias")},
        },
    }
