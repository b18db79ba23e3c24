"""Layers: the masked convolution, channel attention, the SSPCAB blocks and BatchNorm."""

from sspcab_jax.layers.attention import ChannelTransformer, SqueezeExcitation
from sspcab_jax.layers.batch_norm import BatchNorm, batch_statistics
from sspcab_jax.layers.masked_conv import (
    MaskedConv,
    corner_visibility,
    footprint_size,
    uniform_fan_in,
    visible_offsets,
)
from sspcab_jax.layers.sspcab import (
    SSPCAB,
    SSPCAB3D,
    SSPCAB_LOSS_COLLECTION,
    count_sown_losses,
    self_supervised_loss,
)

__all__ = [
    "SSPCAB",
    "SSPCAB3D",
    "SSPCAB_LOSS_COLLECTION",
    "BatchNorm",
    "ChannelTransformer",
    "MaskedConv",
    "SqueezeExcitation",
    "corner_visibility",
    "batch_statistics",
    "count_sown_losses",
    "footprint_size",
    "self_supervised_loss",
    "uniform_fan_in",
    "visible_offsets",
]
