"""Channel attention gates of SSPCAB (squeeze-and-excitation) and SSMCTB (channel transformer).

Both pool the input globally over its spatial axes, compute one gate in (0, 1) per channel and
rescale the input channel-wise; they work on ``[B, H, W, C]`` and ``[B, T, H, W, C]`` alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers.masked_conv import uniform_fan_in

Array = jax.Array
Dtype = Any


def _spatial_mean(x: Array) -> Array:
    """``[B, ..., C] -> [B, C]``: mean over every axis but batch and channels, in float32."""
    return jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)))


def _torch_dense(
    features: int,
    in_features: int,
    use_bias: bool,
    dtype: Dtype | None,
    param_dtype: Dtype,
    name: str,
) -> nn.Dense:
    """A Dense layer initialised like ``torch.nn.Linear``: weights and bias U(+-1/sqrt(fan_in))."""
    init = uniform_fan_in(in_features)
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=init,
        bias_init=init,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation gate, as ``SELayer`` of the official ``sspcab_torch.py``.

    Global mean -> Dense(C // r) + ReLU -> Dense(C) + sigmoid -> channel-wise rescale; both dense
    layers carry a bias, as in all three reference implementations.

    Attributes:
      reduction_ratio: ``r``; the hidden width is ``C // r`` (must be >= 1).
      dtype: computation dtype; None infers from the input.
      param_dtype: parameter dtype.
    """

    reduction_ratio: int = 8
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Rescale channels.

        Args:
          x: ``[B, ..., C]``.

        Returns:
          ``x * gate`` with the same shape and dtype as ``x``.
        """
        channels = x.shape[-1]
        if self.reduction_ratio < 1:
            raise ValueError(f"reduction_ratio must be >= 1, got {self.reduction_ratio}.")
        hidden = channels // self.reduction_ratio
        if hidden < 1:
            raise ValueError(
                f"SSPCAB's squeeze-and-excitation needs channels >= reduction_ratio: got "
                f"{channels} channels with reduction_ratio={self.reduction_ratio}; lower "
                f"reduction_ratio or widen the layer."
            )
        s = _spatial_mean(x).astype(self.dtype or x.dtype)
        s = nn.relu(_torch_dense(hidden, channels, True, self.dtype, self.param_dtype, "fc1")(s))
        gate = nn.sigmoid(
            _torch_dense(channels, hidden, True, self.dtype, self.param_dtype, "fc2")(s)
        )
        return x * gate.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (channels,)).astype(x.dtype)


class ChannelTransformer(nn.Module):
    """Channel-wise transformer gate of SSMCTB (``torch_ssmctb.py`` of ristea/ssmctb).

    Each channel's global mean is one token: Dense(1 -> dim) + learned position embedding
    (standard normal init) -> multi-head self-attention across channels (qkv without bias,
    ``heads`` heads of width ``dim_head``, output projection with bias) -> mean over the ``dim``
    features -> sigmoid -> channel-wise rescale. No LayerNorm, feed-forward or residual, as in
    the reference.

    Attributes:
      dim: token width (64).
      heads: attention heads (5).
      dim_head: width of each head (64).
      dtype: computation dtype; None infers from the input.
      param_dtype: parameter dtype.
    """

    dim: int = 64
    heads: int = 5
    dim_head: int = 64
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Rescale channels.

        Args:
          x: ``[B, ..., C]``.

        Returns:
          ``x * gate`` with the same shape and dtype as ``x``.
        """
        batch, channels = x.shape[0], x.shape[-1]
        dtype = self.dtype or x.dtype
        tokens = _spatial_mean(x)[..., None].astype(dtype)  # [B, C, 1]
        tokens = _torch_dense(self.dim, 1, True, self.dtype, self.param_dtype, "embed")(tokens)
        position = self.param(
            "position", nn.initializers.normal(1.0), (1, channels, self.dim), self.param_dtype
        )
        tokens = tokens + position.astype(dtype)
        inner = self.heads * self.dim_head
        qkv = _torch_dense(3 * inner, self.dim, False, self.dtype, self.param_dtype, "qkv")(tokens)
        q, k, v = jnp.split(qkv.reshape(batch, channels, 3, self.heads, self.dim_head), 3, axis=2)
        q, k, v = (t[:, :, 0] for t in (q, k, v))  # [B, C, heads, dim_head]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * self.dim_head**-0.5
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, channels, inner)
        out = _torch_dense(self.dim, inner, True, self.dtype, self.param_dtype, "out")(attended)
        gate = nn.sigmoid(jnp.mean(out.astype(jnp.float32), axis=-1))  # [B, C]
        return x * gate.reshape((batch,) + (1,) * (x.ndim - 2) + (channels,)).astype(x.dtype)
