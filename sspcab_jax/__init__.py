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

# Loaded on first use so that ``import sspcab_jax`` does not import the detector's modules.
_LAZY = {
    "Calibration": "sspcab_jax.detector.calibration",
    "Detector": "sspcab_jax.detector.detector",
    "Prediction": "sspcab_jax.detector.prediction",
}


def __getattr__(name: str):
    """Imports the lazily exported names (``Detector``, ``Prediction``, ``Calibration``)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sspcab_jax' has no attribute {name!r}")


__all__ = [
    "Calibration",
    "ConvAutoencoder",
    "Detector",
    "Prediction",
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
