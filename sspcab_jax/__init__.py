"""sspcab_jax: SSPCAB, DRAEM and anomaly-detection metrics in JAX/Flax."""

from sspcab_jax.layers import (
    SSPCAB,
    SSPCAB3D,
    SSPCAB_LOSS_COLLECTION,
    ChannelTransformer,
    MaskedConv,
    SqueezeExcitation,
    count_sown_losses,
    self_supervised_loss,
    visible_offsets,
)

__version__ = "0.1.0"

__all__ = [
    "SSPCAB",
    "SSPCAB3D",
    "SSPCAB_LOSS_COLLECTION",
    "ChannelTransformer",
    "MaskedConv",
    "SqueezeExcitation",
    "count_sown_losses",
    "self_supervised_loss",
    "visible_offsets",
]
