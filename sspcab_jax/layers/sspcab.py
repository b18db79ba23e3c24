"""SSPCAB and SSPCAB3D: masked convolution + channel attention + a sown self-supervised loss."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers.attention import ChannelTransformer, SqueezeExcitation
from sspcab_jax.layers.masked_conv import MaskedConv

Array = jax.Array
Dtype = Any

#: Variable collection into which every SSPCAB block sows its self-supervised loss.
SSPCAB_LOSS_COLLECTION = "sspcab_losses"

ATTENTIONS = ("se", "transformer")


class SSPCAB(nn.Module):
    """Self-Supervised Predictive Convolutional Attentive Block (Ristea et al., CVPR 2022).

    ``output = attention(masked_conv(input))``; output shape equals input shape and there is no
    residual connection (official ``sspcab_torch.py``). Each call sows
    ``mean((output - input)^2)`` (float32, no stop-gradient: no reference implementation detaches
    either side, so the loss also trains the layers before the block) into the
    ``SSPCAB_LOSS_COLLECTION`` collection; make it mutable in ``apply`` and sum with
    :func:`sspcab_jax.self_supervised_loss`. When the collection is not mutable (and during
    ``init``) nothing is stored.

    Defaults follow the official PyTorch block: zero padding, one ReLU after the sum of the corner
    convolutions, squeeze-and-excitation with ``r = 8``, PyTorch's default initialisation.

    Attributes:
      kernel_size: side ``k`` of each corner sub-kernel (k >= 1).
      dilation: gap ``d`` between the sub-kernels and the masked centre (d >= 0); the hidden
        centre band is ``2d + 1`` wide.
      reduction_ratio: squeeze-and-excitation reduction ``r`` (channels must be >= r).
      attention: ``'se'`` (SSPCAB) or ``'transformer'`` (SSMCTB channel transformer).
      activation: ``'after_sum'`` (PyTorch), ``'per_branch'`` (TF) or ``'none'`` (anomalib).
      padding: ``'zeros'`` (PyTorch, anomalib) or ``'reflect'`` (TF).
      visibility: optional boolean footprint ``[2k+2d+1] * spatial_dims`` of visible taps for an
        arbitrary pattern; None (default) is the fast corner pattern.
      formulation: masked-convolution formulation, ``'auto'`` picks the fastest exact one.
      spatial_dims: 2 (``[B, H, W, C]``) or 3 (``[B, T, H, W, C]``).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); the loss is always float32.
      param_dtype: parameter dtype.
      kernel_init: initialiser of the masked convolution's corner kernels; None is PyTorch's
        default (U(±1/sqrt(fan_in))). DRAEM's ``weights_init`` (``train_DRAEM.py``) would reset
        them to N(0, 0.02): ``nn.initializers.normal(0.02)``. Biases and the attention layers
        always keep PyTorch's default, as there.
    """

    kernel_size: int = 1
    dilation: int = 1
    reduction_ratio: int = 8
    attention: str = "se"
    activation: str = "after_sum"
    padding: str = "zeros"
    visibility: Any = None
    formulation: str = "auto"
    spatial_dims: int = 2
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Apply the block and sow its self-supervised loss.

        Args:
          x: ``[B, H, W, C]`` (``[B, T, H, W, C]`` for the 3D block).

        Returns:
          Array of the same shape as ``x``, in ``dtype`` (or ``x``'s dtype).
        """
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}.")
        y = MaskedConv(
            kernel_size=self.kernel_size,
            dilation=self.dilation,
            spatial_dims=self.spatial_dims,
            padding=self.padding,
            activation=self.activation,
            visibility=self.visibility,
            formulation=self.formulation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name="masked_conv",
        )(x)
        if self.attention == "se":
            gate = SqueezeExcitation(
                self.reduction_ratio, dtype=self.dtype, param_dtype=self.param_dtype, name="se"
            )
        else:
            gate = ChannelTransformer(
                dtype=self.dtype, param_dtype=self.param_dtype, name="transformer"
            )
        y = gate(y)
        if not self.is_initializing():
            # Sowing during init would put a stale loss into the returned variables, which would
            # then be counted again by every apply that is handed them back.
            wide = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
            loss = jnp.mean(jnp.square(y.astype(wide) - x.astype(wide)))
            self.sow(SSPCAB_LOSS_COLLECTION, "loss", loss)
        return y


class SSPCAB3D(SSPCAB):
    """SSPCAB for video volumes ``[B, T, H, W, C]``: eight corner sub-kernels of ``k^3``.

    Same attributes as :class:`SSPCAB`; the masked centre hides a ``(2d+1)`` band on each of the
    time, height and width axes (as ``torch_ssmctb_3d.py`` of ristea/ssmctb).
    """

    spatial_dims: int = 3


def self_supervised_loss(variables: Any) -> Array:
    """Sum of every SSPCAB loss sown during one ``apply``.

    Args:
      variables: the mutated variables returned by
        ``model.apply(..., mutable=[SSPCAB_LOSS_COLLECTION, ...])``.

    Returns:
      Scalar float32: the sum over every block (and every call of a shared block); 0 when the
      model has no SSPCAB block or the collection was not made mutable.
    """
    collection = variables.get(SSPCAB_LOSS_COLLECTION, {})
    total = jnp.zeros((), jnp.float32)
    for leaf in jax.tree_util.tree_leaves(collection):
        total = total + jnp.sum(jnp.asarray(leaf, jnp.float32))
    return total


def count_sown_losses(variables: Any) -> int:
    """Number of SSPCAB losses sown in ``variables`` (one per block call).

    Args:
      variables: mutated variables as for :func:`self_supervised_loss`.

    Returns:
      The number of sown scalars.
    """
    return len(jax.tree_util.tree_leaves(variables.get(SSPCAB_LOSS_COLLECTION, {})))
