"""Models: DRAEM (+SSPCAB) and the plain convolutional auto-encoder."""

from sspcab_jax.models.autoencoder import (
    ConvAutoencoder,
    reconstruction_error_map,
    reconstruction_score,
)
from sspcab_jax.models.common import CBR, SSPCABSpec
from sspcab_jax.models.draem import (
    DiscriminativeNet,
    Draem,
    ReconstructiveNet,
    anomaly_map,
    image_score,
    mean_filter,
)
from sspcab_jax.models.resample import (
    align_corners_matrix,
    align_corners_taps,
    max_pool2x,
    upsample2x,
)

__all__ = [
    "CBR",
    "ConvAutoencoder",
    "DiscriminativeNet",
    "Draem",
    "ReconstructiveNet",
    "SSPCABSpec",
    "align_corners_matrix",
    "align_corners_taps",
    "anomaly_map",
    "image_score",
    "max_pool2x",
    "mean_filter",
    "reconstruction_error_map",
    "reconstruction_score",
    "upsample2x",
]
