"""Models: DRAEM (+SSPCAB) and the plain convolutional auto-encoder."""

from sspcab_jax.models.autoencoder import (
    ConvAutoencoder,
    reconstruction_error_map,
    reconstruction_score,
)
from sspcab_jax.models.common import CBR, SSPCABSpec, align_corners_matrix, upsample2x
from sspcab_jax.models.draem import (
    DiscriminativeNet,
    Draem,
    ReconstructiveNet,
    anomaly_map,
    image_score,
    mean_filter,
)

__all__ = [
    "CBR",
    "ConvAutoencoder",
    "DiscriminativeNet",
    "Draem",
    "ReconstructiveNet",
    "SSPCABSpec",
    "align_corners_matrix",
    "anomaly_map",
    "image_score",
    "mean_filter",
    "reconstruction_error_map",
    "reconstruction_score",
    "upsample2x",
]
