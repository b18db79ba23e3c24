"""BatchNorm with a fused activation whose normalisation is recomputed in the backward pass.

Numerically this is Flax's ``nn.BatchNorm`` (fast variance ``E[x²] - E[x]²`` clipped at zero,
float32 statistics, the same ``scale``/``bias`` parameters and ``mean``/``var`` running
statistics, the same momentum update) followed by the activation. The difference is memory:
autodiff of ``(x - mean) * rsqrt(var + eps) * scale + bias`` keeps the centred ``x - mean`` for
the backward pass. XLA usually fuses it away, but not where the backward reductions run as
YNNPACK library fusions (the fast CPU setting, ``sspcab_jax.xla_flags``): there it is one more
activation-sized buffer per layer, alive from the forward to the backward pass (+4 GiB in the
paper-size DRAEM step). Here a custom VJP keeps only the layer input ``x`` (which the variance's
gradient needs anyway) and recomputes normalisation and activation, fused, in the backward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]


def batch_statistics(x: Array, axis_name: str | None = None) -> tuple[Array, Array]:
    """Per-channel mean and biased variance of ``x`` over all axes but the last.

    Args:
      x: ``[..., C]``; promoted to at least float32.
      axis_name: a ``pmap`` axis to average the moments over, or None.

    Returns:
      ``(mean, var)``, each ``[C]``; ``var = max(E[x²] - E[x]², 0)``.
    """
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean, mean_sq = x.mean(axes), jnp.square(x).mean(axes)
    if axis_name is not None:
        # One collective for both moments.
        mean, mean_sq = jax.lax.pmean(jnp.stack([mean, mean_sq]), axis_name)
    return mean, jnp.maximum(0.0, mean_sq - jnp.square(mean))


def _normalize(
    x: Array,
    mean: Array,
    var: Array,
    scale: Array,
    bias: Array,
    epsilon: float,
    dtype: Dtype,
    activation: Callable[[Array], Array] | None,
) -> Array:
    # Same operation order as Flax's _normalize so results match it bit for bit.
    y = x - mean
    mul = jax.lax.rsqrt(var + epsilon) * scale
    y = (y * mul + bias).astype(dtype)
    return y if activation is None else activation(y)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _normalize_recomputed(x, mean, var, scale, bias, epsilon, dtype, activation):
    return _normalize(x, mean, var, scale, bias, epsilon, dtype, activation)


def _normalize_recomputed_fwd(x, mean, var, scale, bias, epsilon, dtype, activation):
    out = _normalize(x, mean, var, scale, bias, epsilon, dtype, activation)
    return out, (x, mean, var, scale, bias)


def _normalize_recomputed_bwd(epsilon, dtype, activation, residuals, cotangent):
    x, mean, var, scale, bias = residuals
    # Make the recomputation depend on the cotangent (adding 0·g changes no value). Otherwise XLA
    # merges it with the forward pass's identical `x - mean`, and where that cannot be fused into
    # the backward reductions it is kept alive between the passes. An optimization barrier would
    # say this more directly, but XLA:CPU removes barriers before it merges expressions.
    mean = mean + 0 * cotangent[(0,) * cotangent.ndim].astype(mean.dtype)
    normalize = functools.partial(_normalize, epsilon=epsilon, dtype=dtype, activation=activation)
    _, vjp = jax.vjp(normalize, x, mean, var, scale, bias)
    return vjp(cotangent)


_normalize_recomputed.defvjp(_normalize_recomputed_fwd, _normalize_recomputed_bwd)


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last, with an optional fused activation.

    Attributes:
      use_running_average: normalise with the running statistics (evaluation) instead of the
        batch's (training); may also be given at call time.
      momentum: running-statistics decay (Flax convention: PyTorch's 0.1 is 0.9 here).
      epsilon: added to the variance.
      activation: applied after the affine transform (e.g. ``nn.relu``), or None.
      axis_name: ``pmap`` axis over which batch statistics are averaged, or None.
      scale_init: initialiser of ``scale`` ``[C]``.
      bias_init: initialiser of ``bias`` ``[C]``.
      dtype: output dtype (default: the promotion of the input and parameter dtypes).
      param_dtype: parameter dtype.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    activation: Callable[[Array], Array] | None = None
    axis_name: str | None = None
    scale_init: Initializer = nn.initializers.ones
    bias_init: Initializer = nn.initializers.zeros
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, use_running_average: bool | None = None) -> Array:
        """``[..., C] -> [..., C]``.

        Args:
          x: the input, channels last.
          use_running_average: overrides the attribute of the same name.

        Returns:
          ``activation(scale * (x - mean) / sqrt(var + epsilon) + bias)``.
        """
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axis_name = None if self.is_initializing() else self.axis_name
            mean, var = batch_statistics(x, axis_name)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        scale = self.param("scale", self.scale_init, (features,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype)
        dtype = self.dtype or jnp.result_type(x, scale, bias)
        return _normalize_recomputed(
            x, mean, var, scale, bias, self.epsilon, jnp.dtype(dtype), self.activation
        )
