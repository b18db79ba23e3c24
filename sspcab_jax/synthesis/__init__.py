"""DRAEM anomaly synthesis on device: Perlin masks, source augmenters, blending."""

from sspcab_jax.synthesis.augment import AUGMENTERS, random_augment, rotate
from sspcab_jax.synthesis.draem import (
    ANOMALIB_CONFIG,
    SynthesisConfig,
    blend,
    perlin_texture,
    synthesize,
    synthesize_from_keys,
    synthesize_one,
)
from sspcab_jax.synthesis.perlin import (
    perlin_mask,
    perlin_noise,
    random_perlin_noise,
    random_resolution,
)

__all__ = [
    "ANOMALIB_CONFIG",
    "AUGMENTERS",
    "SynthesisConfig",
    "blend",
    "perlin_mask",
    "perlin_noise",
    "perlin_texture",
    "random_augment",
    "random_perlin_noise",
    "random_resolution",
    "rotate",
    "synthesize",
    "synthesize_from_keys",
    "synthesize_one",
]
