"""Conversion of weights published for the official PyTorch SSPCAB block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The PyTorch block names its four corner convolutions by the crop each one sees
# (sspcab_torch.py): conv1 top-left, conv2 bottom-left, conv3 top-right, conv4 bottom-right.
# Our corner index is row-major over (rows: before/after, cols: before/after).
_TORCH_CONV_OF_CORNER = ("conv1", "conv3", "conv2", "conv4")
_REQUIRED = tuple(
    f"{c}.{p}" for c in ("conv1", "conv2", "conv3", "conv4") for p in ("weight", "bias")
)
_REQUIRED += ("se.fc1.weight", "se.fc1.bias", "se.fc2.weight", "se.fc2.bias")


def sspcab_params_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """Convert the official PyTorch SSPCAB state dict into :class:`sspcab_jax.SSPCAB` params.

    Args:
      state_dict: mapping from PyTorch names (``conv1.weight`` ... ``conv4.bias``,
        ``se.fc1.weight``, ``se.fc1.bias``, ``se.fc2.weight``, ``se.fc2.bias``) to NumPy arrays (or
        tensors, converted with ``np.asarray``) in PyTorch layout: conv weights ``[C, C, k, k]``,
        linear weights ``[out, in]``.
      prefix: optional prefix of every name (e.g. ``"sspcab."`` for a block inside a model).

    Returns:
      The ``params`` dict of an ``SSPCAB(kernel_size=k)`` with default attention and the corner
      formulation: ``{'masked_conv': {'kernel': [4, k, k, C, C], 'bias': [4, C]},
      'se': {'fc1': {...}, 'fc2': {...}}}``.

    Raises:
      ValueError: when a name is missing or the shapes do not fit together.
    """
    missing = [name for name in _REQUIRED if prefix + name not in state_dict]
    if missing:
        raise ValueError(
            f"state_dict lacks {missing}; expected the official PyTorch SSPCAB names "
            f"{list(_REQUIRED)} (pass prefix= if they are nested in a model)."
        )

    def get(name: str) -> np.ndarray:
        value = state_dict[prefix + name]
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=np.float32)

    kernels, biases = [], []
    for conv in _TORCH_CONV_OF_CORNER:
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
    fc1_w, fc2_w = get("se.fc1.weight"), get("se.fc2.weight")
    if fc1_w.shape[1] != channels or fc2_w.shape[0] != channels:
        raise ValueError(
            f"squeeze-and-excitation weights {fc1_w.shape}, {fc2_w.shape} do not fit "
            f"{channels} channels."
        )
    return {
        "masked_conv": {"kernel": np.stack(kernels), "bias": np.stack(biases)},
        "se": {
            "fc1": {"kernel": fc1_w.T, "bias": get("se.fc1.bias")},
            "fc2": {"kernel": fc2_w.T, "bias": get("se.fc2.bias")},
        },
    }
