"""Losses of DRAEM (official ``loss.py``; anomalib's kornia focal loss) and SSPCAB.

Every loss promotes its inputs to at least float32 first, so bfloat16 models still get float32
losses (and float64 runs stay float64).

SSIM here is the official DRAEM one: zero padding (same-size map) and a dynamic range read from the
FIRST argument. ``dm_pix.ssim`` instead filters with VALID windows (a map 10 pixels smaller per
axis) and takes a fixed ``max_val``, and it clips the (co)variances; the interiors of the two maps
agree, their means do not (``tests/test_losses.py`` shows it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sspcab_jax.layers import self_supervised_loss

Array = jax.Array

__all__ = [
    "draem_loss",
    "focal_loss",
    "focal_loss_from_logits",
    "gaussian_window",
    "l2_loss",
    "self_supervised_loss",
    "ssim",
    "ssim_loss",
]

FOCAL_VARIANTS = ("probs", "logits")


def _at_least_f32(x: Array) -> Array:
    """Promote to float32 unless already wider (float64 runs keep their precision)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def l2_loss(a: Array, b: Array) -> Array:
    """Mean squared error over all elements (PyTorch ``MSELoss``, as DRAEM); float32 scalar."""
    return jnp.mean(jnp.square(_at_least_f32(a) - _at_least_f32(b)))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D Gaussian window, ``exp(-(x - size//2)^2 / (2 sigma^2))`` for ``x = 0..size-1``.

    Normalised to sum to 1; the 2-D window is its outer product (DRAEM's ``loss.py``).
    """
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _blur(x: Array, window: np.ndarray) -> Array:
    """Depthwise Gaussian filter of ``[B, H, W, C]`` with zero padding (same size).

    The 2-D window is the outer product of ``window`` with itself, so two 1-D passes with zero
    padding equal the official 2-D depthwise convolution at a fraction of the cost.
    HIGHEST precision: ``E[x^2] - mu^2`` cancels badly under TF32/bf16 convolution passes.
    """
    size = window.shape[0]
    pad = size // 2
    channels = x.shape[-1]
    w = jnp.asarray(window, x.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    for shape, padding in (((size, 1), ((pad, pad), (0, 0))), ((1, size), ((0, 0), (pad, pad)))):
        kernel = jnp.tile(w.reshape(shape + (1, 1)), (1, 1, 1, channels))
        x = jax.lax.conv_general_dilated(
            x,
            kernel,
            (1, 1),
            padding,
            dimension_numbers=dn,
            feature_group_count=channels,
            precision=jax.lax.Precision.HIGHEST,
        )
    return x


def ssim(
    a: Array,
    b: Array,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    val_range: float | None = None,
    axis_name: str | None = None,
    return_map: bool = False,
) -> Array:
    """Structural similarity as in the official DRAEM ``loss.py``.

    Args:
      a: ``[B, H, W, C]``, the reconstruction in DRAEM (the dynamic range is read from it).
      b: ``[B, H, W, C]``, the reference image.
      window_size: Gaussian window side (11).
      sigma: Gaussian standard deviation (1.5).
      val_range: dynamic range ``L``; None computes it from ``a`` every call: ``255`` if
        ``max(a) > 128`` else ``1``, minus ``-1`` if ``min(a) < -0.5`` else ``0``.
      axis_name: under ``pmap``, the device axis over which the batch is split: the dynamic
        range is then taken over the global batch, as on one device.
      return_map: return the per-pixel map instead of its mean.

    Returns:
      Float32 scalar mean SSIM over batch, channels and pixels, or the ``[B, H, W, C]`` map.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"ssim expects two [B, H, W, C] arrays of equal shape, got {a.shape} and {b.shape}."
        )
    a = _at_least_f32(a)
    b = _at_least_f32(b)
    if val_range is None:
        # L is piecewise constant in a: no gradient flows through it (and pmax has no rule).
        a_max, a_min = jnp.max(jax.lax.stop_gradient(a)), jnp.min(jax.lax.stop_gradient(a))
        if axis_name is not None:
            a_max, a_min = jax.lax.pmax(a_max, axis_name), jax.lax.pmin(a_min, axis_name)
        hi = jnp.where(a_max > 128, 255.0, 1.0)
        lo = jnp.where(a_min < -0.5, -1.0, 0.0)
        big_l = hi - lo
    else:
        big_l = jnp.float32(val_range)
    c1 = (0.01 * big_l) ** 2
    c2 = (0.03 * big_l) ** 2
    stacked = jnp.concatenate([a, b, a * a, b * b, a * b], axis=-1)
    blurred = _blur(stacked, gaussian_window(window_size, sigma))
    mu1, mu2, e11, e22, e12 = jnp.split(blurred, 5, axis=-1)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * sigma12 + c2)) / (
        (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    )
    return ssim_map if return_map else jnp.mean(ssim_map)


def ssim_loss(a: Array, b: Array, **kwargs) -> Array:
    """``1 - ssim(a, b)`` (official DRAEM ``loss.py``); keyword arguments go to :func:`ssim`."""
    return 1.0 - ssim(a, b, **kwargs)


def _class_ids(target: Array, probs_shape: tuple[int, ...]) -> Array:
    """``[B, H, W]`` or ``[B, H, W, 1]`` mask -> int class ids, truncated like ``.long()``."""
    if target.ndim == len(probs_shape) and target.shape[-1] == 1:
        target = target[..., 0]
    if target.shape != probs_shape[:-1]:
        raise ValueError(
            f"target must be [B, H, W] (or [B, H, W, 1]) matching predictions "
            f"{probs_shape}, got {target.shape}."
        )
    return target.astype(jnp.int32)


def focal_loss(probs: Array, target: Array, *, gamma: float = 2.0, smooth: float = 1e-5) -> Array:
    """Focal loss on softmax probabilities, as the official DRAEM ``loss.py``.

    The one-hot target is clamped to ``[smooth, 1 - smooth]``;
    ``pt = sum_c onehot_c * p_c + smooth``; loss ``= -(1 - pt)^gamma * log(pt)``, mean over
    pixels; class weights (alpha) are all ones.

    Args:
      probs: ``[B, H, W, K]`` class probabilities (softmax already applied).
      target: ``[B, H, W]`` or ``[B, H, W, 1]`` class ids (the binary anomaly mask); values are
        truncated to integers.
      gamma: focusing parameter (2).
      smooth: target smoothing (1e-5).

    Returns:
      Float32 scalar.
    """
    probs = _at_least_f32(probs)
    ids = _class_ids(target, probs.shape)
    onehot = jax.nn.one_hot(ids, probs.shape[-1], dtype=jnp.float32)
    onehot = jnp.clip(onehot, smooth, 1.0 - smooth)
    pt = jnp.sum(onehot * probs, axis=-1) + smooth
    return jnp.mean(-jnp.power(1.0 - pt, gamma) * jnp.log(pt))


def focal_loss_from_logits(
    logits: Array, target: Array, *, alpha: float = 1.0, gamma: float = 2.0, eps: float = 1e-8
) -> Array:
    """Focal loss on logits as anomalib's DRAEM (kornia ``FocalLoss``, alpha=1).

    ``p = softmax(logits) + eps``; loss ``= -alpha * (1 - p_t)^gamma * log(p_t)`` for the target
    class, mean over pixels.

    Args:
      logits: ``[B, H, W, K]``.
      target: ``[B, H, W]`` or ``[B, H, W, 1]`` class ids.
      alpha: class-independent weight (1).
      gamma: focusing parameter (2).
      eps: added to the probabilities.

    Returns:
      Float32 scalar.
    """
    logits = _at_least_f32(logits)
    ids = _class_ids(target, logits.shape)
    p = jax.nn.softmax(logits, axis=-1) + eps
    onehot = jax.nn.one_hot(ids, logits.shape[-1], dtype=jnp.float32)
    focal = -alpha * jnp.power(1.0 - p, gamma) * jnp.log(p)
    return jnp.mean(jnp.sum(onehot * focal, axis=-1))


def draem_loss(
    reconstruction: Array,
    clean_image: Array,
    logits: Array,
    mask: Array,
    *,
    sspcab_loss: Array | float = 0.0,
    sspcab_lambda: float = 0.1,
    focal: str = "probs",
    axis_name: str | None = None,
) -> dict[str, Array]:
    """DRAEM's total loss, ``L2 + SSIM + focal + lambda * SSPCAB`` (``train_DRAEM.py``: weights 1).

    Args:
      reconstruction: ``[B, H, W, C]`` output of the reconstructive net.
      clean_image: ``[B, H, W, C]`` the image before anomaly synthesis.
      logits: ``[B, H, W, 2]`` discriminator logits.
      mask: ``[B, H, W]`` or ``[B, H, W, 1]`` binary anomaly mask.
      sspcab_loss: the summed block losses (:func:`self_supervised_loss` of the mutated
        variables); 0 without SSPCAB.
      sspcab_lambda: its weight (0.1: the SSPCAB paper's value, also anomalib's default).
      focal: ``'probs'`` (official: focal on softmax probabilities) or ``'logits'`` (anomalib).
      axis_name: ``pmap`` device axis, for SSIM's batch-wide dynamic range.

    Returns:
      Dict of float32 scalars: ``'l2'``, ``'ssim'``, ``'focal'``, ``'sspcab'`` (unweighted) and
      ``'total'``.
    """
    if focal not in FOCAL_VARIANTS:
        raise ValueError(f"focal must be one of {FOCAL_VARIANTS}, got {focal!r}.")
    terms = {
        "l2": l2_loss(reconstruction, clean_image),
        # Reconstruction first: its range sets L, as in DRAEM's loss.py.
        "ssim": ssim_loss(reconstruction, clean_image, axis_name=axis_name),
    }
    if focal == "probs":
        probs = jax.nn.softmax(_at_least_f32(logits), axis=-1)
        terms["focal"] = focal_loss(probs, mask)
    else:
        terms["focal"] = focal_loss_from_logits(logits, mask)
    terms["sspcab"] = _at_least_f32(jnp.asarray(sspcab_loss))
    terms["total"] = terms["l2"] + terms["ssim"] + terms["focal"] + sspcab_lambda * terms["sspcab"]
    return terms
