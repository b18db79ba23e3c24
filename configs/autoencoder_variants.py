"""Variant names of the auto-encoder ablation (supplementary Tables 1 and 2) and their fields.

A variant is ``<positions>[_m3][_3d]``:

* ``<positions>``: ``'none'`` or SSPCAB positions joined by '+' in the order early, middle, late
  (the eight rows of the SSPCAB supplementary Table 1);
* ``_m3``: a 3x3 masked centre instead of 1x1 (Table 2);
* ``_3d``: SSPCAB3D and 3x3x3 convolutions on clips of ``CLIP_LENGTH`` frames.
"""

import ml_collections

from sspcab_jax.models.autoencoder import POSITIONS

TABLE1_VARIANTS = (
    "none",
    "early",
    "middle",
    "late",
    "early+middle",
    "early+late",
    "middle+late",
    "early+middle+late",
)
EXTRA_VARIANTS = ("late_m3", "late_3d", "none_3d")
CLIP_LENGTH = 5  # the last frame sees 4 past frames, as in Liu et al. (CVPR 2018)


def parse_variant(variant: str) -> tuple[tuple[str, ...], int, int]:
    """``variant`` -> ``(positions, masked_centre, spatial_dims)``; ValueError naming the fix."""
    name, masked_centre, spatial_dims = variant, 1, 2
    if name.endswith("_3d"):
        name, spatial_dims = name[: -len("_3d")], 3
    if name.endswith("_m3"):
        name, masked_centre = name[: -len("_m3")], 3
    positions = () if name == "none" else tuple(name.split("+"))
    if (
        not name
        or any(p not in POSITIONS for p in positions)
        or list(positions) != sorted(set(positions), key=POSITIONS.index)
    ):
        raise ValueError(
            f"Unknown variant {variant!r}: use 'none' or positions from {POSITIONS} joined by '+' "
            f"in that order, optionally followed by '_m3' and/or '_3d' (e.g. 'middle+late', "
            f"'late_m3', 'late_3d'). Table 1 rows: {', '.join(TABLE1_VARIANTS)}."
        )
    return positions, masked_centre, spatial_dims


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Sets the auto-encoder fields of ``variant`` on ``config`` (in place) and returns it."""
    positions, masked_centre, spatial_dims = parse_variant(variant)
    config.variant = variant
    config.autoencoder.sspcab_positions = positions
    config.autoencoder.masked_centre = masked_centre
    config.autoencoder.spatial_dims = spatial_dims
    config.data.clip_length = CLIP_LENGTH if spatial_dims == 3 else 0
    return config
