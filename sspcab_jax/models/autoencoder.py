"""Plain convolutional auto-encoder with SSPCAB at early / middle / late positions.

The SSPCAB paper's supplementary Tables 1 and 2 use a plain auto-encoder on Avenue without
describing its layers. This one is an object-centric appearance auto-encoder in the style of
Ionescu et al. (CVPR 2019), on 64x64 grayscale object crops:

* encoder: conv 3x3 (32) + ReLU + max-pool 2, conv 3x3 (32) + ReLU + max-pool 2,
  conv 3x3 (16) + ReLU + max-pool 2 -> latent ``[H/8, W/8, 16]`` (8x8x16 for 64x64 crops);
* decoder: conv 3x3 (16) + ReLU + upsample x2, conv 3x3 (32) + ReLU + upsample x2,
  conv 3x3 (32) + ReLU + upsample x2, conv 3x3 (C), linear.

Early / middle / late are positions in the decoder, the convention of the SSMCTB paper
(Madan et al., TPAMI 2024, Table VIII: "first / middle / last conv block of the decoder"). With
``n`` decoder convs (3 by default):

* ``'early'``  = decoder conv 0 (the first, on the latent; 16 -> 16 at H/8),
* ``'middle'`` = decoder conv ``n // 2`` (16 -> 32 at H/4 by default),
* ``'late'``   = decoder conv ``n - 1``, the penultimate conv of the network (32 -> 32 at H/2),
  i.e. the paper's default "replace the penultimate convolutional layer".

Why the decoder only: counting positions over the whole network would put ``'early'`` on the
first encoder conv, which sees the raw 1- or 3-channel image, where a C -> C block is meaningless
and squeeze-and-excitation with ``r = 8`` cannot even be built; in the decoder every position has
>= 16 channels (``docs/fidelity.md``).

Replacing a conv: the block takes the conv's place and the ReLU after it is kept. SSPCAB maps
C -> C, so the width at that position becomes its INPUT width: with the default widths a block at
``'middle'`` outputs 16 channels instead of 32 and the next conv takes 16 inputs (a 16 -> 32 conv
at ``'late'``, or a 16-channel block if ``'late'`` is also an SSPCAB).

Masked centre (supplementary Table 2, "M = 1x1" vs "M = 3x3"): in the paper ``d`` is the gap
between the masked centre M and each sub-kernel. With an ``m x m`` centre the sub-kernels sit
``(m - 1) / 2`` further out, so the block's dilation is ``d + (m - 1) // 2`` and the hidden band
through each output pixel is ``m + 2d`` wide (a block with dilation ``D`` hides a band of
``2D + 1``). ``masked_centre=1, d=1`` is the default block (hidden 3x3); ``masked_centre=3, d=1``
is block dilation 2 (hidden 5x5).

The block itself comes from a factory (``sspcab``, e.g. ``functools.partial(SSPCAB,
attention='transformer')``). The auto-encoder owns what depends on the position and the input:
it calls ``sspcab(name=..., dtype=..., param_dtype=..., dilation=..., spatial_dims=...)`` with
the dilation above and its own ``spatial_dims``; a factory that fixes one of these is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers import SSPCAB, SSPCAB3D
from sspcab_jax.models.common import (
    BlockFactory,
    build_block,
    check_block_fits,
    check_image,
    conv,
)
from sspcab_jax.models.resample import max_pool2x, upsample2x

Array = jax.Array
Dtype = Any

POSITIONS = ("early", "middle", "late")
UPSAMPLINGS = ("bilinear", "nearest")


def _upsample_nearest(x: Array) -> Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class ConvAutoencoder(nn.Module):
    """OCAE-style convolutional auto-encoder with SSPCAB at any subset of early / middle / late.

    See the module docstring for the layers and the exact meaning of each position.

    Attributes:
      channels: image channels (1 grayscale, 3 colour); the output has the same.
      encoder_widths: conv widths of the encoder, one max-pool after each (32, 32, 16).
      decoder_widths: conv widths of the decoder, one x2 upsampling after each (16, 32, 32); as
        many as encoder widths, at least 3.
      sspcab_positions: subset of ``('early', 'middle', 'late')`` where an SSPCAB replaces the conv.
      sspcab: block factory; None is the official block (``SSPCAB``: ``k = 1``, ReLU after the
        sum, squeeze-and-excitation ``r = 8``; ``SSPCAB3D`` when ``spatial_dims=3``). Called as
        ``sspcab(name=, dtype=, param_dtype=, dilation=, spatial_dims=)``: the block's dtypes,
        dilation and dimensionality follow this model, its other fields (``kernel_size``,
        ``reduction_ratio``, ``attention``, ``activation``, ...) come from the factory.
      sspcab_dilation: gap ``d`` between the masked centre and the sub-kernels: one int for every
        position, or a mapping / tuple of ``(position, d)`` pairs (missing positions use 1). It
        lives here rather than in the factory because the usable gap depends on the feature-map
        size at each position; the SSMCTB paper found larger ``d`` suits earlier positions
        (d = 4 early, 3 middle, 1 late).
      masked_centre: odd side ``m`` of the masked centre M (supplementary Table 2); the block's
        dilation becomes ``d + (m - 1) // 2``.
      spatial_dims: 2 for images / crops ``[B, H, W, C]``; 3 for short clips ``[B, T, H, W, C]``
        (3x3x3 convs, pooling and upsampling on H and W only, SSPCAB3D blocks).
      upsampling: ``'bilinear'`` (align_corners=True) or ``'nearest'``.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    channels: int = 1
    encoder_widths: tuple[int, ...] = (32, 32, 16)
    decoder_widths: tuple[int, ...] = (16, 32, 32)
    sspcab_positions: tuple[str, ...] = ()
    sspcab: BlockFactory | None = None
    sspcab_dilation: int | Mapping[str, int] | tuple[tuple[str, int], ...] = 1
    masked_centre: int = 1
    spatial_dims: int = 2
    upsampling: str = "bilinear"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.nowrap
    def position_index(self) -> dict[str, int]:
        """Decoder conv index of each position (``early`` 0, ``middle`` n // 2, ``late`` n - 1)."""
        n = len(self.decoder_widths)
        return {"early": 0, "middle": n // 2, "late": n - 1}

    @nn.nowrap
    def block_factory(self) -> BlockFactory:
        """``sspcab``, or the official block (``SSPCAB3D`` on clips) when it is None."""
        if self.sspcab is not None:
            return self.sspcab
        return SSPCAB3D if self.spatial_dims == 3 else SSPCAB

    @nn.nowrap
    def block_dilation(self, position: str) -> int:
        """Dilation handed to the SSPCAB block at ``position`` (masked centre included)."""
        d = self.sspcab_dilation
        if isinstance(d, int):
            gap = d
        else:
            pairs = dict(d.items() if isinstance(d, Mapping) else d)
            unknown = set(pairs) - set(POSITIONS)
            if unknown:
                raise ValueError(
                    f"sspcab_dilation keys must be in {POSITIONS}, got {sorted(unknown)}."
                )
            gap = pairs.get(position, 1)
        return gap + (self.masked_centre - 1) // 2

    def _validate(self, x: Array) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}.")
        unknown = [p for p in self.sspcab_positions if p not in POSITIONS]
        if unknown or len(set(self.sspcab_positions)) != len(self.sspcab_positions):
            raise ValueError(
                f"sspcab_positions must be distinct entries of {POSITIONS}, "
                f"got {self.sspcab_positions!r}."
            )
        if len(self.decoder_widths) != len(self.encoder_widths) or len(self.decoder_widths) < 3:
            raise ValueError(
                "encoder_widths and decoder_widths need the same length (one pool per upsample) "
                f"and at least 3 entries; got {self.encoder_widths} and {self.decoder_widths}."
            )
        if self.masked_centre < 1 or self.masked_centre % 2 == 0:
            raise ValueError(f"masked_centre must be a positive odd int, got {self.masked_centre}.")
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}.")
        check_image(
            x,
            rank=self.spatial_dims + 2,
            channels=self.channels,
            divisor=2 ** len(self.encoder_widths),
            field="channels",
            model="ConvAutoencoder",
        )

    def _conv(self, features: int, x: Array, name: str) -> Array:
        # PyTorch's default initialisation, U(+-1/sqrt(fan_in)), as the SSPCAB block itself.
        return conv(
            features,
            x.shape[-1],
            spatial_dims=self.spatial_dims,
            init_scheme="pytorch",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )(x)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Reconstruct ``x``.

        Args:
          x: ``[B, H, W, channels]`` (``[B, T, H, W, channels]`` when ``spatial_dims=3``); H and
            W multiples of ``2 ** len(encoder_widths)`` (8).

        Returns:
          The reconstruction, same shape as ``x``.
        """
        self._validate(x)
        for i, w in enumerate(self.encoder_widths):
            x = max_pool2x(nn.relu(self._conv(w, x, f"enc_conv{i}")))
        blocks = {self.position_index()[p]: p for p in self.sspcab_positions}
        up = upsample2x if self.upsampling == "bilinear" else _upsample_nearest
        for i, w in enumerate(self.decoder_widths):
            if i in blocks:
                position = blocks[i]
                block = build_block(
                    self.block_factory(),
                    host="ConvAutoencoder",
                    name=f"sspcab_{position}",
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    dilation=self.block_dilation(position),
                    spatial_dims=self.spatial_dims,
                )
                check_block_fits(x, block, f"{position!r}")
                # The block keeps its input width (C -> C); see the module docstring.
                x = block(x)
            else:
                x = self._conv(w, x, f"dec_conv{i}")
            x = up(nn.relu(x))
        return self._conv(self.channels, x, "out_conv")


def reconstruction_error_map(reconstruction: Array, target: Array) -> Array:
    """Per-pixel squared error averaged over channels.

    Args:
      reconstruction: ``[B, H, W, C]`` (or ``[B, T, H, W, C]``).
      target: same shape.

    Returns:
      ``[B, H, W]`` (or ``[B, T, H, W]``) float32.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction and target shapes differ: {reconstruction.shape} vs {target.shape}."
        )
    diff = reconstruction.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff), axis=-1)


def reconstruction_score(reconstruction: Array, target: Array) -> Array:
    """Per-sample reconstruction MSE: the score of an object crop (or clip).

    Args:
      reconstruction: ``[B, ..., C]``.
      target: same shape.

    Returns:
      ``[B]`` float32.
    """
    err = reconstruction_error_map(reconstruction, target)
    return jnp.mean(err, axis=tuple(range(1, err.ndim)))
