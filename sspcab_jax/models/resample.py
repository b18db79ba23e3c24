"""Resampling of ``[..., H, W, C]`` maps: align-corners bilinear x2 upsampling, 2x2 max pooling.

Both have hand-written backward passes. On XLA:CPU the textbook forms are slow at DRAEM's sizes:
a dense interpolation matrix (einsum) costs ``O(H)`` multiply-adds per output sample plus a
transpose around each einsum, a gather-based blend makes the layout pass lay the gather out with
the gathered axis major (and the transposes the convolutions' weight gradients need then read it
across the grain), and ``reduce_window`` max pooling differentiates through ``select_and_scatter``,
which the CPU compiler expands into an index map the size of the input, an arg-max window
reduction and a scatter. Here both directions are shifted copies, elementwise weights and
selects that XLA fuses into single passes (``benchmarks/README.md`` has the figures). Values and
gradients are those of PyTorch's ``Upsample(scale_factor=2, mode='bilinear',
align_corners=True)`` and ``MaxPool2d(2)``, as DRAEM's ``model_unet.py`` uses them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


def align_corners_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two input samples and the weight of the second for each output sample.

    Output sample ``i`` sits at input coordinate ``p = i * (size_in - 1) / (size_out - 1)``
    (``align_corners=True``) and is ``(1 - w) * x[lo] + w * x[hi]`` with ``lo = floor(p)``
    (clamped so that ``hi = lo + 1`` stays inside) and ``w = p - lo``.

    Args:
      size_in: input length.
      size_out: output length.

    Returns:
      ``(lo, hi, w)``: int32 ``[size_out]``, int32 ``[size_out]``, float64 ``[size_out]`` (cast
      to the data's dtype where used, so float64 runs get float64 weights).
    """
    if size_in == 1 or size_out == 1:
        zeros = np.zeros(size_out, np.int32)
        return zeros, zeros, np.zeros(size_out)
    pos = np.arange(size_out) * (size_in - 1) / (size_out - 1)
    lo = np.minimum(np.floor(pos).astype(np.int32), size_in - 2)
    return lo, lo + 1, pos - lo


def align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Linear-interpolation matrix with ``align_corners=True``.

    The taps of :func:`align_corners_taps` as a dense matrix (a reference for tests and for
    users who want the operator explicitly).

    Returns:
      ``[size_out, size_in]`` float32 matrix whose rows sum to 1.
    """
    lo, hi, w = align_corners_taps(size_in, size_out)
    matrix = np.zeros((size_out, size_in), np.float32)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, lo), 1.0 - w)
    np.add.at(matrix, (rows, hi), w)
    return matrix


def _along(values: np.ndarray, axis: int, ndim: int, dtype) -> Array:
    """``values`` ``[n]`` as an array broadcasting along ``axis`` of a rank-``ndim`` tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return jnp.asarray(values, dtype).reshape(shape)


def _phase_weights(n: int, axis: int, x: Array) -> tuple[Array, Array]:
    """Weights of the neighbours in the even and odd outputs of a length-``n`` axis.

    With ``m = 2n - 1``, output ``2k`` sits at ``k - k/m`` and output ``2k + 1`` at
    ``k + (n - 1 - k)/m`` (``align_corners_taps`` with ``size_out = 2n``), so
    ``out[2k] = a_k x[k-1] + (1 - a_k) x[k]`` and ``out[2k+1] = (1 - b_k) x[k] + b_k x[k+1]``
    with ``a_k = k/m``, ``b_k = (n-1-k)/m``; ``a_0 = b_{n-1} = 0``, so no tap leaves the axis.
    """
    k = np.arange(n)
    m = 2 * n - 1
    return _along(k / m, axis, x.ndim, x.dtype), _along((n - 1 - k) / m, axis, x.ndim, x.dtype)


def _shift(x: Array, axis: int, step: int) -> Array:
    """``x[k + step]`` along ``axis`` for ``step`` in {-1, 1}, repeating the edge sample."""
    n = x.shape[axis]
    if step < 0:
        parts = (lax.slice_in_dim(x, 0, 1, axis=axis), lax.slice_in_dim(x, 0, n - 1, axis=axis))
    else:
        parts = (lax.slice_in_dim(x, 1, n, axis=axis), lax.slice_in_dim(x, n - 1, n, axis=axis))
    return jnp.concatenate(parts, axis=axis)


def _phases(x: Array, axis: int) -> tuple[Array, Array]:
    """The even and odd outputs of the x2 interpolation along ``axis`` (each ``x``'s shape)."""
    a, b = _phase_weights(x.shape[axis], axis, x)
    even = _shift(x, axis, -1) * a + x * (1 - a)
    odd = x * (1 - b) + _shift(x, axis, 1) * b
    return even, odd


def _phases_transpose(even: Array, odd: Array, axis: int) -> Array:
    """Adjoint of :func:`_phases`: cotangents of the two phases -> cotangent of the input."""
    n = even.shape[axis]
    a, b = _phase_weights(n, axis, even)
    zero = jnp.zeros_like(lax.slice_in_dim(even, 0, 1, axis=axis))
    # x[k] feeds even[k] (1 - a_k), even[k+1] (a_{k+1}), odd[k] (1 - b_k), odd[k-1] (b_{k-1}).
    to_prev = jnp.concatenate([lax.slice_in_dim(even * a, 1, n, axis=axis), zero], axis=axis)
    to_next = jnp.concatenate([zero, lax.slice_in_dim(odd * b, 0, n - 1, axis=axis)], axis=axis)
    return even * (1 - a) + odd * (1 - b) + to_prev + to_next


def _upsample_forward(x: Array) -> Array:
    h_axis, w_axis = x.ndim - 3, x.ndim - 2
    *lead, h, w, c = x.shape
    # One elementwise pass writes all four output phases [.., H, 2, W, 2, C]; the reshape that
    # interleaves them is free.
    rows = _phases(x, h_axis)
    quads = [jnp.stack(_phases(r, w_axis), axis=-2) for r in rows]  # [.., H, W, 2, C] each
    out = jnp.stack(quads, axis=-4)  # [.., H, 2, W, 2, C]
    return out.reshape(*lead, 2 * h, 2 * w, c)


@jax.custom_vjp
def _upsample(x: Array) -> Array:
    return _upsample_forward(x)


def upsample2x(x: Array) -> Array:
    """Bilinear x2 upsampling of the two axes before channels, ``align_corners=True``.

    ``jax.image.resize`` uses half-pixel centres (align_corners=False), which would not match
    PyTorch's ``Upsample(scale_factor=2, mode='bilinear', align_corners=True)`` used by DRAEM
    (``model_unet.py``). Every output is a two-tap blend of neighbours along each axis
    (:func:`align_corners_taps`), written as shifted copies and elementwise weights so that
    XLA fuses the forward, and the hand-written backward, into single passes.

    Args:
      x: ``[B, H, W, C]`` or ``[B, T, H, W, C]`` (time is not resampled).

    Returns:
      ``[B, 2H, 2W, C]`` (or ``[B, T, 2H, 2W, C]``) in ``x``'s dtype.
    """
    _check_rank(x, "upsample2x")
    return _upsample(x)


def _upsample_fwd(x: Array) -> tuple[Array, None]:
    return _upsample_forward(x), None


def _upsample_bwd(_, grad: Array) -> tuple[Array]:
    *lead, h2, w2, c = grad.shape
    h_axis, w_axis = grad.ndim - 3, grad.ndim - 2
    g = grad.reshape(*lead, h2 // 2, 2, w2 // 2, 2, c)
    rows = [_phases_transpose(g[..., :, p, :, 0, :], g[..., :, p, :, 1, :], w_axis) for p in (0, 1)]
    return (_phases_transpose(rows[0], rows[1], h_axis),)


_upsample.defvjp(_upsample_fwd, _upsample_bwd)


def _check_rank(x: Array, name: str) -> None:
    """Raise a ValueError unless ``x`` is ``[B, H, W, C]`` or ``[B, T, H, W, C]``."""
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} expects [B, H, W, C] or [B, T, H, W, C], got shape {tuple(x.shape)}; add "
            f"the missing batch or channel axis (e.g. x[None] or x[..., None])."
        )


def _windows(x: Array) -> Array:
    """``[..., H, W, C] -> [..., H/2, 2, W/2, 2, C]`` (a free reshape)."""
    *lead, h, w, c = x.shape
    return x.reshape(*lead, h // 2, 2, w // 2, 2, c)


def _window_max(x: Array) -> Array:
    # Elementwise maxima of the four window corners rather than a reduce: XLA:CPU hands reduce
    # ops to YNNPACK under the default flags, whose window reduction is far slower here.
    win = _windows(x)
    top = jnp.maximum(win[..., :, 0, :, 0, :], win[..., :, 0, :, 1, :])
    bottom = jnp.maximum(win[..., :, 1, :, 0, :], win[..., :, 1, :, 1, :])
    return jnp.maximum(top, bottom)


@jax.custom_vjp
def _max_pool(x: Array) -> Array:
    return _window_max(x)


def _max_pool_fwd(x: Array) -> tuple[Array, tuple[Array, Array]]:
    out = _window_max(x)
    return out, (x, out)


def _max_pool_bwd(residuals: tuple[Array, Array], grad: Array) -> tuple[Array]:
    x, out = residuals
    hit = _windows(x) == out[..., :, None, :, None, :]
    # PyTorch and XLA's select_and_scatter send the gradient to the first maximum of a window in
    # row-major order, not split over ties (ties are common: zeros after a ReLU).
    taken = jnp.zeros_like(hit[..., :, 0, :, 0, :])
    rows = []
    for dy in (0, 1):
        row = []
        for dx in (0, 1):
            first = hit[..., :, dy, :, dx, :] & ~taken
            taken = taken | first
            row.append(first)
        rows.append(jnp.stack(row, axis=-2))  # [..., H/2, W/2, 2, C]
    first = jnp.stack(rows, axis=-4)  # [..., H/2, 2, W/2, 2, C]
    dx_windows = jnp.where(first, grad[..., :, None, :, None, :], jnp.zeros((), grad.dtype))
    return (dx_windows.reshape(x.shape),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool2x(x: Array) -> Array:
    """2x2 max pooling, stride 2, on the two axes before channels (time untouched).

    Args:
      x: ``[B, H, W, C]`` or ``[B, T, H, W, C]``; odd H or W lose their last row / column
        (VALID pooling).

    Returns:
      ``[B, H // 2, W // 2, C]`` (or ``[B, T, H // 2, W // 2, C]``). The gradient goes to the
      first maximum of each window in row-major order, as in PyTorch.
    """
    _check_rank(x, "max_pool2x")
    h, w = x.shape[-3], x.shape[-2]
    if h % 2 or w % 2:
        x = x[..., : h - h % 2, : w - w % 2, :]
    return _max_pool(x)
