"""Conversion of PyTorch weights: the SSPCAB block, official DRAEM and anomalib DRAEM.

Nothing here imports torch except :func:`load_official_draem` / :func:`read_torch_state_dict`,
which need the optional ``torch`` extra to read checkpoint files.
"""

from sspcab_jax.convert.draem import DraemTorchWeights, draem_variables_from_torch
from sspcab_jax.convert.official import LoadedDraem, load_official_draem, read_torch_state_dict
from sspcab_jax.convert.sspcab import sspcab_params_from_torch

__all__ = [
    "DraemTorchWeights",
    "LoadedDraem",
    "draem_variables_from_torch",
    "load_official_draem",
    "read_torch_state_dict",
    "sspcab_params_from_torch",
]
