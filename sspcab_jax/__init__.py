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
from sspcab_jax.losses import draem_loss, focal_loss, l2_loss, ssim, ssim_loss
from sspcab_jax.models import ConvAutoencoder, Draem, anomaly_map, image_score

__version__ = "0.1.0"

__all__ = [
    "ConvAutoencoder",
    "Draem",
    "anomaly_map",
    "draem_loss",
    "focal_loss",
    "image_score",
    "l2_loss",
    "ssim",
    "ssim_loss",
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
