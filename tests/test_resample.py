"""Align-corners upsampling and max pooling: values and hand-written gradients vs NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.models import align_corners_matrix, align_corners_taps, max_pool2x, upsample2x


def np_upsample(x):
    """PyTorch ``Upsample(2, 'bilinear', align_corners=True)`` on axes -3, -2, loop by loop."""
    *lead, h, w, c = x.shape
    out = np.zeros((*lead, 2 * h, 2 * w, c))
    for i in range(2 * h):
        y = i * (h - 1) / (2 * h - 1) if h > 1 else 0.0
        y0 = min(int(np.floor(y)), h - 1)
        y1 = min(y0 + 1, h - 1)
        for j in range(2 * w):
            xx = j * (w - 1) / (2 * w - 1) if w > 1 else 0.0
            x0 = min(int(np.floor(xx)), w - 1)
            x1 = min(x0 + 1, w - 1)
            fy, fx = y - y0, xx - x0
            top = (1 - fx) * x[..., y0, x0, :] + fx * x[..., y0, x1, :]
            bottom = (1 - fx) * x[..., y1, x0, :] + fx * x[..., y1, x1, :]
            out[..., i, j, :] = (1 - fy) * top + fy * bottom
    return out


def np_linear_vjp(fn, x_shape, cotangent):
    """VJP of a linear map, one basis vector at a time: ``grad[k] = <fn(e_k), cotangent>``."""
    grad = np.zeros(int(np.prod(x_shape)))
    for k in range(grad.size):
        basis = np.zeros(grad.size)
        basis[k] = 1.0
        grad[k] = np.sum(fn(basis.reshape(x_shape)) * cotangent)
    return grad.reshape(x_shape)


def test_taps_hand_values():
    lo, hi, w = align_corners_taps(2, 4)
    np.testing.assert_array_equal(lo, [0, 0, 0, 0])
    np.testing.assert_array_equal(hi, [1, 1, 1, 1])
    np.testing.assert_allclose(w, [0, 1 / 3, 2 / 3, 1], atol=1e-7)
    lo, hi, w = align_corners_taps(1, 2)
    np.testing.assert_array_equal(lo, [0, 0])
    np.testing.assert_array_equal(w, [0, 0])
    np.testing.assert_allclose(align_corners_matrix(3, 6).sum(1), 1.0)
    np.testing.assert_allclose(align_corners_matrix(3, 6)[[0, -1]], [[1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 4, 2), (2, 2, 3, 4, 1)])
def test_upsample_values_and_gradient_match_numpy(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    out_shape = (*shape[:-3], 2 * shape[-3], 2 * shape[-2], shape[-1])
    cotangent = rng.normal(size=out_shape)
    with jax.enable_x64(True):
        ours, vjp = jax.vjp(upsample2x, jnp.asarray(x))
        (grad,) = vjp(jnp.asarray(cotangent))
        jit_grad = jax.jit(jax.grad(lambda v: jnp.sum(upsample2x(v) * cotangent)))(x)
    np.testing.assert_allclose(ours, np_upsample(x), atol=1e-12)
    expected = np_linear_vjp(np_upsample, shape, cotangent)
    np.testing.assert_allclose(grad, expected, atol=1e-12)
    np.testing.assert_allclose(jit_grad, expected, atol=1e-12)


def test_upsample_keeps_dtype():
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    out, vjp = jax.vjp(upsample2x, x)
    assert out.dtype == jnp.bfloat16 and vjp(out)[0].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), 1.0)


def np_max_pool_and_grad(x, cotangent):
    """2x2 max pooling; the gradient goes to the first maximum in row-major window order."""
    *lead, h, w, c = x.shape
    h, w = h // 2 * 2, w // 2 * 2
    out = np.zeros((*lead, h // 2, w // 2, c))
    grad = np.zeros_like(x)
    for idx in np.ndindex(*lead):
        for i in range(h // 2):
            for j in range(w // 2):
                for ch in range(c):
                    window = [(2 * i + dy, 2 * j + dx) for dy in (0, 1) for dx in (0, 1)]
                    values = [x[idx + (p, q, ch)] for p, q in window]
                    best = int(np.argmax(values))  # first maximum
                    out[idx + (i, j, ch)] = values[best]
                    p, q = window[best]
                    grad[idx + (p, q, ch)] += cotangent[idx + (i, j, ch)]
    return out, grad


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (1, 5, 7, 2), (1, 2, 4, 4, 2)])
def test_max_pool_values_and_gradient_match_numpy(shape):
    rng = np.random.default_rng(1)
    # Rounded, rectified values: many windows tie (all zeros, or equal positive values).
    x = np.maximum(np.round(rng.normal(size=shape), 0), 0.0).astype(np.float32)
    out_shape = (*shape[:-3], shape[-3] // 2, shape[-2] // 2, shape[-1])
    cotangent = rng.normal(size=out_shape).astype(np.float32)
    expected_out, expected_grad = np_max_pool_and_grad(x, cotangent)
    assert np.any(expected_out > 0) and np.any(x == 0)
    out, vjp = jax.vjp(max_pool2x, jnp.asarray(x))
    (grad,) = vjp(jnp.asarray(cotangent))
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-7)
    jit_grad = jax.jit(jax.grad(lambda v: jnp.sum(max_pool2x(v) * cotangent)))(x)
    np.testing.assert_allclose(jit_grad, expected_grad, atol=1e-7)


def test_max_pool_gradient_equals_reduce_window_gradient():
    """Same gradient as Flax's ``nn.max_pool`` (XLA select_and_scatter), ties included."""
    from flax import linen as nn

    x = jnp.asarray(np.maximum(np.random.default_rng(2).normal(size=(2, 8, 8, 4)), 0.0))
    g = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 4)), x.dtype)
    ours = jax.vjp(max_pool2x, x)[1](g)[0]
    flax_pool = jax.vjp(lambda v: nn.max_pool(v, (2, 2), (2, 2), "VALID"), x)[1](g)[0]
    np.testing.assert_array_equal(ours, flax_pool)


@pytest.mark.parametrize("fn", [upsample2x, max_pool2x])
def test_wrong_rank_names_the_layout(fn):
    with pytest.raises(ValueError, match=r"\[B, H, W, C\].*x\[None\]"):
        fn(jnp.ones((4, 4, 3)))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        jax.grad(lambda v: jnp.sum(fn(v)))(jnp.ones((4, 4, 3)))
