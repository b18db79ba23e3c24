"""sspcab_jax: SSPCAB, DRAEM and anomaly-detection metrics in JAX/Flax.

Every public name is imported on first use (module-level ``__getattr__``), so that
``import sspcab_jax.export`` (running an exported detector) does not import Flax or the model
code. ``from sspcab_jax import Draem`` and ``sspcab_jax.models`` work as usual.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "SSPCAB": "sspcab_jax.layers",
    "SSPCAB3D": "sspcab_jax.layers",
    "SSPCAB_LOSS_COLLECTION": "sspcab_jax.layers",
    "ChannelTransformer": "sspcab_jax.layers",
    "MaskedConv": "sspcab_jax.layers",
    "SqueezeExcitation": "sspcab_jax.layers",
    "count_sown_losses": "sspcab_jax.layers",
    "self_supervised_loss": "sspcab_jax.layers",
    "visible_offsets": "sspcab_jax.layers",
    "draem_loss": "sspcab_jax.losses",
    "focal_loss": "sspcab_jax.losses",
    "l2_loss": "sspcab_jax.losses",
    "ssim": "sspcab_jax.losses",
    "ssim_loss": "sspcab_jax.losses",
    "ConvAutoencoder": "sspcab_jax.models",
    "Draem": "sspcab_jax.models",
    "anomaly_map": "sspcab_jax.models",
    "image_score": "sspcab_jax.models",
    "Calibration": "sspcab_jax.detector.calibration",
    "Detector": "sspcab_jax.detector.detector",
    "Prediction": "sspcab_jax.detector.prediction",
}


def __getattr__(name: str):
    """Imports a public name, or a subpackage (``sspcab_jax.models``), on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'sspcab_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
