"""Building blocks shared by the models: initialisers, the CBR block, input checks.

Numbers follow the official DRAEM code (``model_unet.py``, ``weights_init`` of ``train_DRAEM.py``);
resampling is in ``resample.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from sspcab_jax.layers import BatchNorm, uniform_fan_in

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

INIT_SCHEMES = ("official", "pytorch")

# PyTorch BatchNorm2d defaults, which DRAEM keeps: eps 1e-5, momentum 0.1 (= Flax momentum 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def check_init_scheme(init_scheme: str, field: str = "init_scheme") -> None:
    """Raise a ValueError naming ``field`` when ``init_scheme`` is unknown."""
    if init_scheme not in INIT_SCHEMES:
        raise ValueError(f"{field} must be one of {INIT_SCHEMES}, got {init_scheme!r}.")


def conv_kernel_init(init_scheme: str, fan_in: int) -> Initializer:
    """Initialiser of a conv kernel.

    Args:
      init_scheme: ``'official'`` (DRAEM's ``weights_init``: N(0, 0.02)) or ``'pytorch'``
        (PyTorch's default, U(±1/sqrt(fan_in)), as anomalib).
      fan_in: ``C_in * kh * kw``.

    Returns:
      A Flax initialiser.
    """
    check_init_scheme(init_scheme)
    if init_scheme == "official":
        return nn.initializers.normal(stddev=0.02)
    return uniform_fan_in(fan_in)


def sspcab_kernel_init(init_scheme: str) -> Initializer | None:
    """Initialiser of an SSPCAB block's corner kernels inside DRAEM (the block's ``kernel_init``).

    Args:
      init_scheme: ``'official'``: DRAEM's ``weights_init`` (``train_DRAEM.py``) resets every
        module whose class name contains "Conv" to N(0, 0.02), so the four corner convolutions
        of a block dropped into that script are reset too (biases and the squeeze-and-excitation
        linears keep PyTorch's default); ``'pytorch'``: PyTorch's default for the whole block.

    Returns:
      ``nn.initializers.normal(0.02)``, or None for the block's own (PyTorch) default.
    """
    check_init_scheme(init_scheme, field="sspcab_init")
    return nn.initializers.normal(stddev=0.02) if init_scheme == "official" else None


def bn_scale_init(init_scheme: str) -> Initializer:
    """BatchNorm scale initialiser: N(1, 0.02) officially (DRAEM's ``weights_init``), else ones."""
    check_init_scheme(init_scheme)
    if init_scheme == "pytorch":
        return nn.initializers.ones

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)

    return init


def conv(
    features: int,
    in_features: int,
    *,
    kernel_size: int = 3,
    spatial_dims: int = 2,
    init_scheme: str = "official",
    dtype: Dtype | None = None,
    param_dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """Convolution with bias, stride 1, zero padding ``kernel_size // 2`` (same-size output).

    The bias is always PyTorch's default U(±1/sqrt(fan_in)); DRAEM's ``weights_init`` only resets
    the weight.

    Args:
      features: output channels.
      in_features: input channels (sets ``fan_in = in_features * kernel_size**spatial_dims``).
      kernel_size: side of the (square / cubic) kernel.
      spatial_dims: 2 (``[B, H, W, C]``) or 3 (``[B, T, H, W, C]``).
      init_scheme: ``'official'`` or ``'pytorch'`` (see :func:`conv_kernel_init`).
      dtype: computation dtype.
      param_dtype: parameter dtype.
      name: module name.

    Returns:
      An ``nn.Conv`` to call on ``[B, *S, in_features]``.
    """
    fan_in = in_features * kernel_size**spatial_dims
    pad = kernel_size // 2
    return nn.Conv(
        features,
        (kernel_size,) * spatial_dims,
        padding=((pad, pad),) * spatial_dims,
        use_bias=True,
        kernel_init=conv_kernel_init(init_scheme, fan_in),
        bias_init=uniform_fan_in(fan_in),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


# Builds an SSPCAB-like block: ``factory(name=..., dtype=..., param_dtype=..., **host_fields)``
# returns a C -> C module, e.g. ``functools.partial(SSPCAB, kernel_size=3, dilation=2)``.
BlockFactory = Callable[..., nn.Module]

# Fields every host sets on its block: the block runs in the host's dtypes under its own name.
HOST_OWNED = ("name", "dtype", "param_dtype")


def build_block(
    factory: BlockFactory,
    *,
    host: str,
    name: str,
    dtype: Dtype | None,
    param_dtype: Dtype,
    **host_fields: Any,
) -> nn.Module:
    """Call an SSPCAB factory with the fields its host model owns.

    The host decides the block's ``name`` (the parameter-tree key), its ``dtype`` and
    ``param_dtype`` (those of the host) and any ``host_fields`` (e.g. the auto-encoder's
    per-position ``dilation``); everything else comes from the factory.

    Args:
      factory: a callable returning a C -> C module, typically ``functools.partial(SSPCAB, ...)``.
      host: the host model's name, for the message.
      name: module name of the block.
      dtype: computation dtype of the host.
      param_dtype: parameter dtype of the host.
      **host_fields: further block fields that the host sets.

    Returns:
      The unbound block.

    Raises:
      ValueError: the factory is a ``functools.partial`` that fixes a host-owned field.
    """
    owned = set(HOST_OWNED) | set(host_fields)
    fixed = sorted(owned & set(getattr(factory, "keywords", None) or {}))
    if fixed:
        raise ValueError(
            f"{host} sets {fixed} of its SSPCAB block itself; remove them from the sspcab factory "
            f"(dtypes follow {host}.dtype / param_dtype)."
        )
    return factory(name=name, dtype=dtype, param_dtype=param_dtype, **host_fields)


class CBR(nn.Module):
    """Conv 3x3 (stride 1, zero padding 1, bias) -> BatchNorm -> ReLU, DRAEM's basic block.

    With ``sspcab`` set, an SSPCAB block replaces the convolution and BatchNorm + ReLU are kept
    (SSPCAB paper, Sec. 3: the block replaces a convolutional layer, by default the penultimate
    one); the block maps C -> C, so ``features`` must equal the input channels.

    Attributes:
      features: output channels.
      init_scheme: ``'official'`` or ``'pytorch'``.
      sspcab: None for a plain conv, else a block factory (e.g. ``functools.partial(SSPCAB,
        dilation=2)``) called as ``sspcab(name='sspcab', dtype=dtype, param_dtype=param_dtype)``:
        the block's dtypes follow this module's.
      bn_axis_name: axis name over which BatchNorm statistics are averaged (``pmap``); None
        for one device.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    features: int
    init_scheme: str = "official"
    sspcab: BlockFactory | None = None
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """``[B, H, W, C_in] -> [B, H, W, features]``; BatchNorm uses batch stats iff ``train``.

        ``train`` may be passed by position so that ``nn.remat(CBR, static_argnums=(2,))``
        (the ``remat`` option of the DRAEM networks) can treat it as static.
        """
        if self.sspcab is None:
            x = conv(
                self.features,
                x.shape[-1],
                init_scheme=self.init_scheme,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="conv",
            )(x)
        else:
            if x.shape[-1] != self.features:
                raise ValueError(
                    f"SSPCAB keeps channels: it cannot replace a conv {x.shape[-1]} -> "
                    f"{self.features}."
                )
            block = build_block(
                self.sspcab,
                host="CBR",
                name="sspcab",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )
            check_block_fits(x, block, self.name or "CBR")
            x = block(x)
        return BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            activation=nn.relu,
            axis_name=self.bn_axis_name,
            scale_init=bn_scale_init(self.init_scheme),
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="bn",
        )(x)


def check_block_fits(x: Array, block: nn.Module, where: str) -> None:
    """Raise if an SSPCAB block on ``x`` would see only zero padding.

    With gap ``d`` (the block's ``dilation``) the block's nearest visible taps sit ``d + 1`` away
    from the output position; on a map with ``d + 1`` or fewer samples along an axis every tap
    falls into the padding and the block degenerates to a constant. Blocks without a
    ``dilation`` field are not checked.

    Args:
      x: the block input ``[B, *S, C]``.
      block: the (unbound) block about to be applied to ``x``.
      where: the block's position, for the message.
    """
    dilation = getattr(block, "dilation", None)
    if not isinstance(dilation, int):
        return
    sizes = tuple(x.shape[1:-1])
    if min(sizes) < dilation + 2:
        raise ValueError(
            f"The SSPCAB block at {where} sees only zero padding: its input is {sizes} and its "
            f"nearest taps are {dilation + 1} away (dilation={dilation}); use a larger input or a "
            f"smaller dilation."
        )


def check_image(
    x: Array, *, rank: int, channels: int, divisor: int, field: str, model: str
) -> None:
    """Validate an input tensor; raise a ValueError saying what to change.

    Args:
      x: the input.
      rank: expected rank (4 for ``[B, H, W, C]``, 5 for ``[B, T, H, W, C]``).
      channels: expected channel count.
      divisor: H and W must be divisible by it (the total pooling factor).
      field: the model field that sets ``channels``.
      model: the model name, for the message.
    """
    layout = "[B, H, W, C]" if rank == 4 else "[B, T, H, W, C]"
    if x.ndim != rank:
        raise ValueError(f"{model} expects a rank-{rank} input {layout}, got {tuple(x.shape)}.")
    if x.shape[-1] != channels:
        raise ValueError(
            f"{model} expects {channels} input channels ({field}={channels}), got "
            f"{x.shape[-1]}; set {field} or convert the image."
        )
    h, w = x.shape[-3], x.shape[-2]
    if h % divisor or w % divisor:
        raise ValueError(
            f"{model} pools by {divisor}: H and W must be multiples of {divisor}, got "
            f"{h}x{w}; resize or pad the input."
        )


# CBR whose activations are recomputed in the backward pass instead of stored (``train`` static).
RematCBR = nn.remat(CBR, static_argnums=(2,))
