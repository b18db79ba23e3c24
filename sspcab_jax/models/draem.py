"""DRAEM (Zavrtanik et al., ICCV 2021) with optional SSPCAB blocks.

Layers, wiring and initialisation follow the official code (DRAEM's ``model_unet.py`` and
``train_DRAEM.py``); scoring is in ``scoring.py``. SSPCAB placements:

* ``'none'``: plain DRAEM.
* ``'bottleneck'`` (anomalib): the reconstructive encoder's block 5 (both CBR layers) is replaced
  by one SSPCAB on the pooled ``8b``-channel features, with no BatchNorm after it; by default the
  block has anomalib's linear sum (``activation='none'``). Discriminative net unchanged.
* ``'penultimate'`` (the SSPCAB paper's rule "replace the penultimate convolutional layer", in
  both networks as the authors answered for DRAEM in the ristea/sspcab issue tracker; no official
  DRAEM+SSPCAB code exists):
  the second 3x3 conv of ``db4`` in BOTH networks becomes an SSPCAB; its BatchNorm + ReLU are
  kept; the block uses the official PyTorch ReLU after the sum by default.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers import SSPCAB
from sspcab_jax.models.common import (
    CBR,
    BlockFactory,
    RematCBR,
    build_block,
    check_block_fits,
    check_image,
    check_init_scheme,
    conv,
)
from sspcab_jax.models.resample import max_pool2x, upsample2x

Array = jax.Array
Dtype = Any

PLACEMENTS = ("none", "bottleneck", "penultimate")
DISC_INPUT_ORDERS = (("reconstruction", "image"), ("image", "reconstruction"))


def _check_placement(placement: str, allowed: tuple[str, ...] = PLACEMENTS) -> None:
    if placement not in allowed:
        raise ValueError(f"sspcab_placement must be one of {allowed}, got {placement!r}.")


def default_sspcab(placement: str) -> BlockFactory:
    """The block the source of ``placement`` uses, as a factory (what ``sspcab=None`` means).

    ``'bottleneck'``: anomalib's block, whose four corner convolutions are summed with no
    activation (``activation='none'``). ``'penultimate'`` (and ``'none'``, where no block is
    built): the official PyTorch block (``sspcab_torch.py``), one ReLU after the sum
    (``activation='after_sum'``). Both have ``k = 1``, ``d = 1`` and squeeze-and-excitation with
    ``r = 8``.

    Args:
      placement: one of ``PLACEMENTS``.

    Returns:
      A callable ``(name=, dtype=, param_dtype=) -> SSPCAB``.
    """
    _check_placement(placement)
    if placement == "bottleneck":
        return functools.partial(SSPCAB, activation="none")
    return SSPCAB


class _Layers(nn.Module):
    """Shared fields and the CBR factory of both sub-networks."""

    base_width: int = 64
    sspcab_placement: str = "none"
    sspcab: BlockFactory | None = None
    init_scheme: str = "official"
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    @nn.nowrap
    def block_factory(self) -> BlockFactory:
        """``sspcab``, or the placement's default block when it is None."""
        if self.sspcab is None:
            return default_sspcab(self.sspcab_placement)
        return self.sspcab

    @nn.nowrap
    def cbr(self, features: int, name: str, sspcab: bool = False) -> CBR:
        # Call the result as ``block(x, train)``: the remat variant needs ``train`` by position.
        cls = RematCBR if self.remat else CBR
        return cls(
            features,
            init_scheme=self.init_scheme,
            sspcab=self.block_factory() if sspcab else None,
            bn_axis_name=self.bn_axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    @nn.nowrap
    def fin_out(self, features: int, in_features: int) -> nn.Conv:
        # Final 3x3 conv with bias and no activation (``fin_out`` in ``model_unet.py``).
        return conv(
            features,
            in_features,
            init_scheme=self.init_scheme,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="fin_out",
        )


class ReconstructiveNet(_Layers):
    """DRAEM's reconstructive sub-network: encoder-decoder without skips (``model_unet.py``).

    ``[B, H, W, in_channels] -> [B, H, W, out_channels]``; H and W must be multiples of 16.
    69,048,579 parameters at ``base_width=128``, as the official ``ReconstructiveSubNetwork``.

    Attributes:
      in_channels: input channels (3).
      out_channels: output channels (3).
      base_width: ``b``; 128 in the paper, 8-16 for CPU tests.
      sspcab_placement: ``'none'``, ``'bottleneck'`` or ``'penultimate'`` (module docstring).
      sspcab: block factory, None for the placement's default (see :func:`default_sspcab`).
      init_scheme: ``'official'`` (``weights_init`` of ``train_DRAEM.py``) or ``'pytorch'``.
      bn_axis_name: BatchNorm statistics axis for ``pmap``; None on one device.
      dtype: computation dtype (``jnp.bfloat16`` on accelerators).
      param_dtype: parameter dtype.
      remat: recompute each CBR block's activations in the backward pass instead of storing
        them (``nn.remat``): less training memory, more compute; same values and gradients.
    """

    in_channels: int = 3
    out_channels: int = 3
    base_width: int = 128

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        """Reconstruct ``x`` ``[B, H, W, in_channels]``; returns ``[B, H, W, out_channels]``."""
        _check_placement(self.sspcab_placement)
        check_init_scheme(self.init_scheme)
        check_image(
            x,
            rank=4,
            channels=self.in_channels,
            divisor=16,
            field="in_channels",
            model="ReconstructiveNet",
        )
        b = self.base_width
        widths = (b, 2 * b, 4 * b, 8 * b)
        for i, w in enumerate(widths, start=1):
            x = self.cbr(w, f"enc_block{i}_0")(x, train)
            x = self.cbr(w, f"enc_block{i}_1")(x, train)
            x = max_pool2x(x)
        if self.sspcab_placement == "bottleneck":
            # anomalib (draem/torch_model.py): SSPCAB(8b) replaces both CBRs of block 5, no BN.
            block = build_block(
                self.block_factory(),
                host="ReconstructiveNet",
                name="enc_block5_sspcab",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )
            check_block_fits(x, block, "the bottleneck (H/16 x W/16)")
            x = block(x)
        else:
            x = self.cbr(8 * b, "enc_block5_0")(x, train)
            x = self.cbr(8 * b, "enc_block5_1")(x, train)
        # Decoder stages: (up width, db first width, db second width), as in model_unet.py.
        stages = ((8 * b, 8 * b, 4 * b), (4 * b, 4 * b, 2 * b), (2 * b, 2 * b, b), (b, b, b))
        for i, (w_up, w0, w1) in enumerate(stages, start=1):
            x = self.cbr(w_up, f"dec_up{i}")(upsample2x(x), train)
            x = self.cbr(w0, f"dec_db{i}_0")(x, train)
            penultimate = i == 4 and self.sspcab_placement == "penultimate"
            x = self.cbr(w1, f"dec_db{i}_1", sspcab=penultimate)(x, train)
        return self.fin_out(self.out_channels, x.shape[-1])(x)


class DiscriminativeNet(_Layers):
    """DRAEM's discriminative sub-network: six-level U-Net (``model_unet.py``).

    ``[B, H, W, in_channels] -> [B, H, W, out_channels]`` logits; H and W must be multiples of 32.
    28,374,146 parameters at ``base_width=64``, as the official ``DiscriminativeSubNetwork``.
    Decoder concatenation order is always
    ``[upsampled, skip]``.

    Attributes:
      in_channels: input channels (6: reconstruction and image).
      out_channels: logit channels (2: normal, anomalous).
      base_width: ``b``; 64 in the paper, 8-16 for CPU tests.
      sspcab_placement: ``'none'`` or ``'penultimate'`` (``'bottleneck'`` leaves this net plain,
        as in anomalib).
      sspcab: block factory, None for the placement's default (see :func:`default_sspcab`).
      init_scheme: ``'official'`` or ``'pytorch'``.
      bn_axis_name: BatchNorm statistics axis for ``pmap``; None on one device.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      remat: recompute each CBR block's activations in the backward pass (see
        :class:`ReconstructiveNet`).
    """

    in_channels: int = 6
    out_channels: int = 2
    base_width: int = 64

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        """Segment ``x`` ``[B, H, W, in_channels]``; returns logits ``[B, H, W, out_channels]``."""
        _check_placement(self.sspcab_placement)
        check_init_scheme(self.init_scheme)
        check_image(
            x,
            rank=4,
            channels=self.in_channels,
            divisor=32,
            field="in_channels",
            model="DiscriminativeNet",
        )
        b = self.base_width
        widths = (b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b)
        skips = []
        for i, w in enumerate(widths, start=1):
            if i > 1:
                x = max_pool2x(x)
            x = self.cbr(w, f"enc_block{i}_0")(x, train)
            x = self.cbr(w, f"enc_block{i}_1")(x, train)
            skips.append(x)
        skips.pop()  # block6 output is the bottleneck, not a skip
        # (name, up width, db width), deepest first, as in model_unet.py.
        stages = (
            ("b", 8 * b, 8 * b),
            ("1", 4 * b, 4 * b),
            ("2", 2 * b, 2 * b),
            ("3", b, b),
            ("4", b, b),
        )
        for name, w_up, w_db in stages:
            x = self.cbr(w_up, f"dec_up{name}")(upsample2x(x), train)
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = self.cbr(w_db, f"dec_db{name}_0")(x, train)
            penultimate = name == "4" and self.sspcab_placement == "penultimate"
            x = self.cbr(w_db, f"dec_db{name}_1", sspcab=penultimate)(x, train)
        return self.fin_out(self.out_channels, x.shape[-1])(x)


class Draem(nn.Module):
    """DRAEM: reconstructive net -> discriminative net on the 6-channel concatenation.

    97,422,725 parameters at paper widths (128 / 64); 83,003,909 with ``'bottleneck'``
    (anomalib's variant); 97,326,237 with ``'penultimate'``.

    ``init`` also returns the SSPCAB losses sown while initialising: keep only ``params`` and
    ``batch_stats``, or an ``apply`` with ``'sspcab_losses'`` mutable appends to the stale ones.

    Attributes:
      recon_width: reconstructive base width (128 in the paper and the official code).
      disc_width: discriminative base width (64 in the paper and the official code).
      in_channels: image channels (3).
      sspcab_placement: ``'none'``, ``'bottleneck'`` (anomalib) or ``'penultimate'`` (paper
        guidance); see the module docstring.
      sspcab: factory of the SSPCAB block(s), e.g. ``functools.partial(SSPCAB, kernel_size=3,
        dilation=2, attention='transformer')``; called as ``sspcab(name=..., dtype=dtype,
        param_dtype=param_dtype)``, so the block's dtypes follow this model (a factory that
        fixes ``name``, ``dtype`` or ``param_dtype`` is rejected). The factory is used as given:
        anything it leaves unset keeps ``SSPCAB``'s default (``k = 1``, ``d = 1``, ``r = 8``,
        ReLU after the sum). None picks the block of each placement's source
        (:func:`default_sspcab`): anomalib's linear sum (``activation='none'``) for
        ``'bottleneck'``, the official PyTorch block (``activation='after_sum'``) for
        ``'penultimate'``.
      disc_input_order: order of the discriminator's input concatenation:
        ``('reconstruction', 'image')`` (official ``train_DRAEM.py``) or
        ``('image', 'reconstruction')`` (anomalib's ``torch_model.py``); weights are not
        interchangeable between the two.
      init_scheme: ``'official'`` (N(0, 0.02) conv weights, N(1, 0.02) BN scales, DRAEM's
        ``weights_init``) or ``'pytorch'`` (framework defaults, as anomalib). SSPCAB blocks
        are initialised by their factory: PyTorch's default, or DRAEM's N(0, 0.02) for the
        corner convolutions with ``functools.partial(SSPCAB, kernel_init=sspcab_kernel_init(
        'official'))`` (config ``draem.sspcab_init``; ``docs/fidelity.md``).
      bn_axis_name: BatchNorm statistics axis for ``pmap``; None on one device.
      dtype: computation dtype (``jnp.bfloat16`` on accelerators); losses stay float32.
      param_dtype: parameter dtype.
      remat: recompute every CBR block's activations in the backward pass instead of storing
        them (``nn.remat``); off by default. Trades compute for training memory; parameters,
        outputs and gradients are unchanged. XLA:CPU removes the optimisation barriers remat
        relies on and merges the recomputation back into the forward pass, so on CPU it saves
        nothing (``benchmarks/README.md``); BatchNorm's own saving does not depend on it.
    """

    recon_width: int = 128
    disc_width: int = 64
    in_channels: int = 3
    sspcab_placement: str = "none"
    sspcab: BlockFactory | None = None
    disc_input_order: tuple[str, str] = ("reconstruction", "image")
    init_scheme: str = "official"
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, image: Array, *, train: bool) -> tuple[Array, Array]:
        """Reconstruct and segment.

        Args:
          image: ``[B, H, W, in_channels]`` in [0, 1]; H and W multiples of 32.
          train: BatchNorm uses batch statistics (and updates ``batch_stats``) when True.

        Returns:
          ``(reconstruction [B, H, W, in_channels], logits [B, H, W, 2])``. During training the
          reconstruction reaches the discriminator without ``stop_gradient`` so the focal loss
          also trains the reconstructive net (as ``train_DRAEM.py``); at test time it is detached.
        """
        _check_placement(self.sspcab_placement)
        if tuple(self.disc_input_order) not in DISC_INPUT_ORDERS:
            raise ValueError(
                f"disc_input_order must be one of {DISC_INPUT_ORDERS}, "
                f"got {self.disc_input_order!r}."
            )
        check_image(
            image,
            rank=4,
            channels=self.in_channels,
            divisor=32,
            field="in_channels",
            model="Draem",
        )
        common = dict(
            sspcab=self.sspcab,
            init_scheme=self.init_scheme,
            bn_axis_name=self.bn_axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            remat=self.remat,
        )
        rec = ReconstructiveNet(
            in_channels=self.in_channels,
            out_channels=self.in_channels,
            base_width=self.recon_width,
            sspcab_placement=self.sspcab_placement,
            name="reconstructive",
            **common,
        )(image, train=train)
        disc_rec = rec if train else jax.lax.stop_gradient(rec)
        parts = {"reconstruction": disc_rec, "image": image.astype(rec.dtype)}
        disc_in = jnp.concatenate([parts[k] for k in self.disc_input_order], axis=-1)
        disc_placement = "penultimate" if self.sspcab_placement == "penultimate" else "none"
        logits = DiscriminativeNet(
            in_channels=2 * self.in_channels,
            out_channels=2,
            base_width=self.disc_width,
            sspcab_placement=disc_placement,
            name="discriminative",
            **common,
        )(disc_in, train=train)
        return rec, logits
