"""The masked convolution of SSPCAB: corner sub-kernels around a hidden centre, in 2D and 3D.

Geometry (as ``sspcab_torch.py``): with sub-kernel side ``k`` and gap ``d``, output position ``i``
along every spatial axis sees input positions ``i + r`` with ``r`` in
``{-(k+d) .. -(d+1)} ∪ {d+1 .. d+k}``. In 2D that is four ``k x k`` corner blocks of a
``(2k+2d+1)^2`` footprint (eight ``k^3`` blocks in 3D); the centre band of width ``2d+1`` through
the output position is hidden, so the layer must predict the centre from its context.

Parameters are stored per corner (``kernel [n_corners, k, ..., k, C, C]`` and
``bias [n_corners, C]``) like the four independent convolutions of the official PyTorch block, so
that weights convert one to one and every formulation below shares one checkpoint layout:

* ``'dilated'`` (k = 1 only): one ``2 x 2`` (``2 x 2 x 2``) convolution with kernel dilation
  ``2d + 2``; the fastest exact form on CPU and accelerators.
* ``'concat'``: the corner crops of the padded input concatenated on channels, one VALID conv.
* ``'crops'``: one VALID conv per corner crop, summed (needed for a per-branch activation).
* ``'masked'``: a full footprint kernel times a fixed boolean visibility mask; used only for
  arbitrary visibility patterns (it is several times slower).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

PADDINGS = ("zeros", "reflect")
ACTIVATIONS = ("after_sum", "per_branch", "none")
FORMULATIONS = ("auto", "dilated", "concat", "crops", "masked")


def visible_offsets(kernel_size: int, dilation: int) -> tuple[int, ...]:
    """Offsets ``r`` (along one axis) that the masked convolution sees around an output position.

    Args:
      kernel_size: side ``k`` of each corner sub-kernel (``k >= 1``).
      dilation: gap ``d`` between each sub-kernel and the masked centre (``d >= 0``).

    Returns:
      Sorted offsets ``(-(k+d), ..., -(d+1), d+1, ..., d+k)``; ``2k`` values.
    """
    _check_geometry(kernel_size, dilation)
    k, d = kernel_size, dilation
    return tuple(range(-(k + d), -d)) + tuple(range(d + 1, d + k + 1))


def footprint_size(kernel_size: int, dilation: int) -> int:
    """Side of the full receptive field, ``2k + 2d + 1``."""
    return 2 * kernel_size + 2 * dilation + 1


def corner_visibility(kernel_size: int, dilation: int, spatial_dims: int = 2) -> np.ndarray:
    """Boolean footprint of the default corner pattern.

    Args:
      kernel_size: sub-kernel side ``k``.
      dilation: gap ``d``.
      spatial_dims: 2 (images) or 3 (videos).

    Returns:
      Boolean array of shape ``[F] * spatial_dims`` with ``F = 2k + 2d + 1``; True where the
      masked convolution has a weight.
    """
    size = footprint_size(kernel_size, dilation)
    centre = kernel_size + dilation
    line = np.zeros(size, dtype=bool)
    line[[centre + r for r in visible_offsets(kernel_size, dilation)]] = True
    mask = line
    for _ in range(spatial_dims - 1):
        mask = np.multiply.outer(mask, line)
    return mask.astype(bool)


def uniform_fan_in(fan_in: int) -> Initializer:
    """PyTorch's default conv/linear initialiser, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    PyTorch draws both weights and biases of ``Conv2d`` and ``Linear`` this way.

    Args:
      fan_in: number of inputs of one output unit (``C_in * k^n`` for a conv).

    Returns:
      A Flax initialiser ``(key, shape, dtype) -> array``.
    """
    bound = 1.0 / np.sqrt(fan_in)

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _check_geometry(kernel_size: int, dilation: int) -> None:
    if not isinstance(kernel_size, int | np.integer) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}.")
    if not isinstance(dilation, int | np.integer) or dilation < 0:
        raise ValueError(f"dilation must be an integer >= 0, got {dilation!r}.")


def _dimension_numbers(spatial_dims: int) -> tuple[str, str, str]:
    if spatial_dims == 2:
        return ("NHWC", "HWIO", "NHWC")
    return ("NDHWC", "DHWIO", "NDHWC")


def _pad(x: Array, pad: int, mode: str) -> Array:
    widths = [(0, 0)] + [(pad, pad)] * (x.ndim - 2) + [(0, 0)]
    if mode == "zeros":
        return jnp.pad(x, widths)
    return jnp.pad(x, widths, mode="reflect")


class MaskedConv(nn.Module):
    """Masked convolution: corner sub-kernels around a hidden centre; ``C -> C`` channels.

    Attributes:
      kernel_size: side ``k`` of each corner sub-kernel (paper's k'); 1 by default.
      dilation: gap ``d`` between each sub-kernel and the masked centre; 1 by default.
      spatial_dims: 2 for ``[B, H, W, C]`` inputs, 3 for ``[B, T, H, W, C]``.
      padding: ``'zeros'`` (official PyTorch, default) or ``'reflect'`` (official TF).
      activation: where the ReLU goes: ``'after_sum'`` (official PyTorch, default),
        ``'per_branch'`` (official TF: on each corner branch before the sum) or ``'none'``
        (anomalib: linear).
      visibility: optional boolean footprint ``[F] * spatial_dims`` (``F = 2k + 2d + 1``) for an
        arbitrary pattern of visible taps; None means the corner pattern.
      formulation: ``'auto'`` picks the fastest exact form; the others force one (see module doc).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); None infers from the input.
      param_dtype: parameter dtype.
      kernel_init: initialiser of the corner kernels; PyTorch's default when None.
      bias_init: initialiser of the corner biases; PyTorch's default when None.
    """

    kernel_size: int = 1
    dilation: int = 1
    spatial_dims: int = 2
    padding: str = "zeros"
    activation: str = "after_sum"
    visibility: Any = None
    formulation: str = "auto"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None

    def resolved_formulation(self) -> str:
        """The formulation ``'auto'`` resolves to for this configuration."""
        if self.visibility is not None:
            return "masked"
        if self.formulation != "auto":
            return self.formulation
        if self.activation == "per_branch":
            return "crops"
        if self.kernel_size == 1:
            return "dilated"
        # benchmarks/block.py: on CPU, one conv over concatenated crops beats four convs for k > 1.
        return "concat"

    def _validate(self, x: Array) -> None:
        _check_geometry(self.kernel_size, self.dilation)
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}.")
        if x.ndim != self.spatial_dims + 2:
            layout = "[B, H, W, C]" if self.spatial_dims == 2 else "[B, T, H, W, C]"
            raise ValueError(
                f"{type(self).__name__} with spatial_dims={self.spatial_dims} expects a rank-"
                f"{self.spatial_dims + 2} input {layout}, got shape {tuple(x.shape)}."
            )
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.formulation not in FORMULATIONS:
            raise ValueError(
                f"formulation must be one of {FORMULATIONS}, got {self.formulation!r}."
            )
        form = self.resolved_formulation()
        if form == "dilated" and self.kernel_size != 1:
            raise ValueError("formulation='dilated' needs kernel_size=1; use 'concat' or 'crops'.")
        if form in ("dilated", "concat") and self.activation == "per_branch":
            raise ValueError(
                f"formulation={form!r} cannot apply a per-branch activation; use 'crops'."
            )
        if self.visibility is not None:
            expected = (footprint_size(self.kernel_size, self.dilation),) * self.spatial_dims
            if np.shape(self.visibility) != expected:
                raise ValueError(
                    f"visibility must be a boolean array of shape {expected} "
                    f"(2k+2d+1 per axis), got {np.shape(self.visibility)}."
                )
            if self.activation == "per_branch":
                raise ValueError(
                    "activation='per_branch' needs the corner pattern, not visibility."
                )

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Apply the masked convolution.

        Args:
          x: ``[B, H, W, C]`` (or ``[B, T, H, W, C]`` when ``spatial_dims=3``).

        Returns:
          Same shape as ``x``.
        """
        self._validate(x)
        channels = x.shape[-1]
        nd = self.spatial_dims
        k = self.kernel_size
        dtype = self.dtype or jnp.result_type(x, self.param_dtype)
        x = x.astype(dtype)

        if self.visibility is not None:
            return self._masked(x, channels, dtype)

        n_corners = 2**nd
        fan_in = channels * k**nd
        kernel = self.param(
            "kernel",
            self.kernel_init or uniform_fan_in(fan_in),
            (n_corners,) + (k,) * nd + (channels, channels),
            self.param_dtype,
        )
        bias = self.param(
            "bias",
            self.bias_init or uniform_fan_in(fan_in),
            (n_corners, channels),
            self.param_dtype,
        )
        kernel = kernel.astype(dtype)
        bias = bias.astype(dtype)
        form = self.resolved_formulation()
        dn = _dimension_numbers(nd)

        if form == "dilated":
            # Corner c = (s_1, ..., s_nd), s in {0: before, 1: after}; in a 2 x 2 kernel dilated by
            # 2d + 2 the taps land at offsets -(d+1) and +(d+1) on every axis.
            dilated = kernel.reshape((2,) * nd + (channels, channels))
            pad = self.dilation + 1
            xp = _pad(x, pad, self.padding)
            y = jax.lax.conv_general_dilated(
                xp,
                dilated,
                window_strides=(1,) * nd,
                padding="VALID",
                rhs_dilation=(2 * self.dilation + 2,) * nd,
                dimension_numbers=dn,
            )
            y = y + jnp.sum(bias, axis=0)
        else:
            crops = self._corner_crops(x)
            if form == "concat":
                stacked = jnp.concatenate(crops, axis=-1)
                # [n, k.., C, C] -> [k.., n*C, C], matching the channel order of the concatenation.
                merged = jnp.moveaxis(kernel, 0, nd).reshape(
                    (k,) * nd + (n_corners * channels, channels)
                )
                y = jax.lax.conv_general_dilated(
                    stacked, merged, (1,) * nd, "VALID", dimension_numbers=dn
                )
                y = y + jnp.sum(bias, axis=0)
            else:
                y = 0
                for c, crop in enumerate(crops):
                    branch = jax.lax.conv_general_dilated(
                        crop, kernel[c], (1,) * nd, "VALID", dimension_numbers=dn
                    )
                    branch = branch + bias[c]
                    if self.activation == "per_branch":
                        branch = nn.relu(branch)
                    y = y + branch
        if self.activation == "after_sum":
            y = nn.relu(y)
        return y

    def _corner_crops(self, x: Array) -> list[Array]:
        """Shifted crops of the padded input, one per corner, each ``size + k - 1`` per axis."""
        k, d, nd = self.kernel_size, self.dilation, self.spatial_dims
        pad = k + d
        border = k + 2 * d + 1  # start of the "after" crop in padded coordinates
        xp = _pad(x, pad, self.padding)
        sizes = x.shape[1:-1]
        crops = []
        for corner in itertools.product((0, 1), repeat=nd):
            index = [slice(None)]
            for axis, side in enumerate(corner):
                start = 0 if side == 0 else border
                index.append(slice(start, start + sizes[axis] + k - 1))
            index.append(slice(None))
            crops.append(xp[tuple(index)])
        return crops

    def _masked(self, x: Array, channels: int, dtype: Dtype) -> Array:
        nd = self.spatial_dims
        size = footprint_size(self.kernel_size, self.dilation)
        mask = np.asarray(self.visibility, dtype=bool)
        fan_in = int(mask.sum()) * channels
        kernel = self.param(
            "kernel",
            self.kernel_init or uniform_fan_in(fan_in),
            (size,) * nd + (channels, channels),
            self.param_dtype,
        )
        bias = self.param(
            "bias", self.bias_init or uniform_fan_in(fan_in), (channels,), self.param_dtype
        )
        kernel = kernel.astype(dtype) * jnp.asarray(mask, dtype)[..., None, None]
        xp = _pad(x, size // 2, self.padding)
        y = jax.lax.conv_general_dilated(
            xp, kernel, (1,) * nd, "VALID", dimension_numbers=_dimension_numbers(nd)
        )
        y = y + bias.astype(dtype)
        if self.activation == "after_sum":
            y = nn.relu(y)
        return y
