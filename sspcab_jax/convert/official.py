"""Reading DRAEM checkpoint files written by PyTorch (needs the optional ``torch`` extra)."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from sspcab_jax.convert.draem import draem_variables_from_torch
from sspcab_jax.models import Draem

TORCH_EXTRA_HINT = 'reading PyTorch checkpoint files needs torch: pip install -e ".[torch]"'


class LoadedDraem(NamedTuple):
    """Result of :func:`load_official_draem`.

    Attributes:
      model: the :class:`Draem` the weights belong to.
      variables: ``{'params', 'batch_stats'}`` for ``model.apply``.
      model_kwargs: the fields ``model`` was built with (see ``draem_variables_from_torch``).
      input_channel_order: ``'bgr'`` for official checkpoints (trained on OpenCV images),
        ``'rgb'`` for anomalib's.
    """

    model: Draem
    variables: dict
    model_kwargs: dict
    input_channel_order: str


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError(TORCH_EXTRA_HINT) from error
    return torch


def read_torch_state_dict(path: str | os.PathLike) -> dict:
    """Read a PyTorch checkpoint file as a state dict of NumPy arrays, on the CPU.

    Uses ``torch.load(..., map_location='cpu', weights_only=True)``: plain tensors only, no
    pickled code runs.

    Args:
      path: a file written by ``torch.save`` (zip format, e.g. DRAEM's ``.pckl`` files).

    Returns:
      Mapping name -> float32 NumPy array (non-tensor entries are kept as they are).

    Raises:
      ImportError: when torch is not installed (naming the extra to install).
      FileNotFoundError: when ``path`` does not exist.
    """
    torch = _torch()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {os.fspath(path)!r}.")
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {
        key: value.detach().cpu().float().numpy() if torch.is_tensor(value) else value
        for key, value in state.items()
    }


def load_official_draem(
    reconstructive_path: str | os.PathLike, discriminative_path: str | os.PathLike | None = None
) -> LoadedDraem:
    """Load DRAEM weights saved by PyTorch into a :class:`Draem`.

    Official DRAEM publishes one file per sub-network (``train_DRAEM.py`` saves
    ``<run>.pckl`` and ``<run>_seg.pckl``); anomalib saves one combined file (pass it as
    ``reconstructive_path`` with ``discriminative_path=None``).

    Args:
      reconstructive_path: the reconstructive net's file (``<run>.pckl``), or anomalib's file.
      discriminative_path: the discriminative net's file (``<run>_seg.pckl``), or None.

    Returns:
      :class:`LoadedDraem` ``(model, variables, model_kwargs, input_channel_order)``. Feed the
      model ``[B, H, W, 3]`` images in [0, 1] in ``input_channel_order`` (BGR for the official
      checkpoints), H and W multiples of 32 (256 as in training).

    Raises:
      ImportError: when torch is not installed (``pip install -e ".[torch]"``).
      ValueError: when the files do not hold DRAEM weights (every offending key listed).
    """
    recon = read_torch_state_dict(reconstructive_path)
    disc = None if discriminative_path is None else read_torch_state_dict(discriminative_path)
    variables, model_kwargs, channel_order = draem_variables_from_torch(recon, disc)
    return LoadedDraem(Draem(**model_kwargs), variables, model_kwargs, channel_order)
