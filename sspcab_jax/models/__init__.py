"""Models: DRAEM (+SSPCAB) and the plain convolutional auto-encoder."""

from sspcab_jax.models.autoencoder import (
    POSITIONS,
    ConvAutoencoder,
    reconstruction_error_map,
    reconstruction_score,
)
from sspcab_jax.models.common import CBR, BlockFactory
from sspcab_jax.models.draem import (
    PLACEMENTS,
    DiscriminativeNet,
    Draem,
    ReconstructiveNet,
    default_sspcab,
)
from sspcab_jax.models.resample import (
    align_corners_matrix,
    align_corners_taps,
    max_pool2x,
    upsample2x,
)
from sspcab_jax.models.scoring import SCORE_MODES, anomaly_map, image_score, mean_filter

__all__ = [
    "CBR",
    "PLACEMENTS",
    "POSITIONS",
    "SCORE_MODES",
    "BlockFactory",
    "ConvAutoencoder",
    "DiscriminativeNet",
    "Draem",
    "ReconstructiveNet",
    "align_corners_matrix",
    "align_corners_taps",
    "anomaly_map",
    "default_sspcab",
    "image_score",
    "max_pool2x",
    "mean_filter",
    "reconstruction_error_map",
    "reconstruction_score",
    "upsample2x",
]
