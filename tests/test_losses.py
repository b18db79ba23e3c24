"""Losses: SSIM (official DRAEM), focal (official and anomalib), L2, the DRAEM total."""

import math

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from sspcab_jax import layers, losses
from sspcab_jax.losses import (
    draem_loss,
    focal_loss,
    focal_loss_from_logits,
    l2_loss,
    ssim,
    ssim_loss,
)

# --------------------------------------------------------------------------- NumPy references


def np_ssim_map(a, b, val_range=None):
    """SSIM as DRAEM's loss.py computes it, float64, 2-D 11x11 window, zero padding."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)
    if val_range is None:
        val_range = (255 if a.max() > 128 else 1) - (-1 if a.min() < -0.5 else 0)
    c1, c2 = (0.01 * val_range) ** 2, (0.03 * val_range) ** 2

    def blur(z):  # z: [B, H, W, C], each channel separately
        out = np.empty_like(z)
        for i in range(z.shape[0]):
            for c in range(z.shape[-1]):
                out[i, ..., c] = ndimage.correlate(z[i, ..., c], window, mode="constant", cval=0)
        return out

    mu1, mu2 = blur(a), blur(b)
    s11 = blur(a * a) - mu1**2
    s22 = blur(b * b) - mu2**2
    s12 = blur(a * b) - mu1 * mu2
    return ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))


def np_focal_probs(probs, target, gamma=2.0, smooth=1e-5):
    """Official DRAEM focal loss (loss.py) on probabilities [N, K] and integer targets [N]."""
    onehot = np.eye(probs.shape[-1])[target]
    onehot = np.clip(onehot, smooth, 1 - smooth)
    pt = (onehot * probs).sum(-1) + smooth
    return np.mean(-((1 - pt) ** gamma) * np.log(pt))


def np_focal_logits(logits, target, gamma=2.0, eps=1e-8):
    """anomalib / kornia focal loss (kornia.losses.focal) on logits [N, K], alpha = 1."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True) + eps
    pt = p[np.arange(len(target)), target]
    return np.mean(-((1 - pt) ** gamma) * np.log(pt))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (2, 24, 20, 3)).astype(np.float32)
    noise = rng.normal(0, 0.1, a.shape).astype(np.float32)
    b = np.clip(ndimage.uniform_filter(a, size=(1, 3, 3, 1)) + noise, 0, 1).astype(np.float32)
    return a, b


# --------------------------------------------------------------------------- SSIM


def test_ssim_of_identical_images_is_one(images):
    a, _ = images
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (255.0, 0.0), (2.0, -1.0)])
def test_ssim_matches_numpy_reference(images, scale, shift):
    # The three dynamic-range branches: L = 1, L = 255, L = 2 (min < -0.5).
    a, b = (x * scale + shift for x in images)
    ours = np.asarray(ssim(a, b, return_map=True))
    ref = np_ssim_map(a, b)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert float(ssim(a, b)) == pytest.approx(ref.mean(), abs=1e-5)


def test_ssim_image_and_its_negative():
    c = 0.6
    a = np.full((1, 32, 32, 1), c, np.float32)
    m = np.asarray(ssim(a, -a, return_map=True))
    # Interior pixels see a constant window: mu = +-c and sigma = 0, so
    # SSIM = (C1 - 2c^2) / (C1 + 2c^2); with L = 1, C1 = 1e-4: (1e-4 - 0.72) / (1e-4 + 0.72).
    # Tolerance: float32 E[x^2] - mu^2 leaves ~1e-7 against C2 = 9e-4 (as in the reference).
    np.testing.assert_allclose(m[0, 5:-5, 5:-5, 0], -0.9997222607971116, atol=5e-4)
    assert float(ssim(a, -a)) == pytest.approx(np_ssim_map(a, -a).mean(), abs=5e-4)
    # The range comes from the FIRST argument: min(-a) < -0.5 gives L = 2, C1 = 4e-4.
    m2 = np.asarray(ssim(-a, a, return_map=True))
    np.testing.assert_allclose(m2[0, 5:-5, 5:-5, 0], (4e-4 - 0.72) / (4e-4 + 0.72), atol=5e-4)
    assert float(ssim(-a, a)) == pytest.approx(np_ssim_map(-a, a).mean(), abs=5e-4)
    # Hence SSIM is not symmetric in its arguments.
    assert abs(float(ssim(-a, a)) - float(ssim(a, -a))) > 1e-2


def test_ssim_differs_from_dm_pix_only_by_borders_and_range(images):
    a, b = images
    pix_map = np.asarray(dm_pix.ssim(a, b, return_map=True))
    ours_map = np.asarray(ssim(a, b, return_map=True))
    # dm-pix filters with VALID windows: its map is 10 px smaller per axis ...
    assert pix_map.shape == (2, 14, 10, 3) and ours_map.shape == a.shape
    # ... and equals our zero-padded map away from the borders ...
    np.testing.assert_allclose(ours_map[:, 5:-5, 5:-5], pix_map, atol=1e-5)
    # ... so the means differ: border windows with zero padding are included in ours.
    assert abs(float(ssim(a, b)) - float(np.mean(pix_map))) > 1e-3
    # dm-pix takes a fixed max_val (1.0 by default); ours reads L = 255 from 0..255 data.
    a255, b255 = a * 255, b * 255
    pix_fixed = np.asarray(dm_pix.ssim(a255, b255, return_map=True))
    ours_255 = np.asarray(ssim(a255, b255, return_map=True))[:, 5:-5, 5:-5]
    assert np.max(np.abs(ours_255 - pix_fixed)) > 1e-3
    pix_255 = np.asarray(dm_pix.ssim(a255, b255, max_val=255.0, return_map=True))
    np.testing.assert_allclose(ours_255, pix_255, atol=1e-5)


def test_ssim_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        ssim(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 1)))


# --------------------------------------------------------------------------- focal


def test_focal_loss_perfect_prediction_is_zero():
    target = np.array([[[0, 1], [1, 0]]], np.float32)
    probs = np.stack([1 - target, target], axis=-1)
    assert float(focal_loss(probs, target)) == pytest.approx(0.0, abs=1e-7)


def test_focal_loss_hand_value():
    # p(anomalous) = 0.7 everywhere, every pixel anomalous:
    # pt = 1e-5 * 0.3 + (1 - 1e-5) * 0.7 + 1e-5 = 0.700006; loss = -(1 - pt)^2 ln(pt).
    probs = np.broadcast_to(np.array([0.3, 0.7], np.float32), (1, 4, 4, 2))
    target = np.ones((1, 4, 4, 1), np.float32)
    assert float(focal_loss(probs, target)) == pytest.approx(0.032098689543119445, rel=1e-5)


def test_focal_losses_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (2, 6, 5, 2)).astype(np.float32)
    target = (rng.uniform(size=(2, 6, 5)) > 0.6).astype(np.float32)
    z = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (z / z.sum(-1, keepdims=True)).astype(np.float32)
    flat_t = target.reshape(-1).astype(int)
    ours = float(focal_loss(probs, target))
    assert ours == pytest.approx(np_focal_probs(probs.reshape(-1, 2), flat_t), rel=1e-5)
    ours_l = float(focal_loss_from_logits(logits, target))
    assert ours_l == pytest.approx(np_focal_logits(logits.reshape(-1, 2), flat_t), rel=1e-5)
    # The two variants differ only by the smoothing terms.
    assert ours == pytest.approx(ours_l, abs=1e-4)


def test_focal_loss_rejects_mismatched_target():
    with pytest.raises(ValueError, match="target"):
        focal_loss(jnp.ones((1, 4, 4, 2)) / 2, jnp.zeros((1, 4, 5)))


# --------------------------------------------------------------------------- L2 and total


def test_l2_loss_matches_numpy(images):
    a, b = images
    assert float(l2_loss(a, b)) == pytest.approx(np.mean((a - b) ** 2), rel=1e-6)


def test_draem_loss_terms_and_total(images):
    a, b = images
    rng = np.random.default_rng(2)
    logits = rng.normal(size=a.shape[:-1] + (2,)).astype(np.float32)
    mask = (rng.uniform(size=a.shape[:-1]) > 0.5).astype(np.float32)
    terms = draem_loss(
        jnp.asarray(a, jnp.bfloat16), b, jnp.asarray(logits, jnp.bfloat16), mask, sspcab_loss=0.5
    )
    assert set(terms) == {"l2", "ssim", "focal", "sspcab", "total"}
    assert all(v.dtype == jnp.float32 for v in terms.values())
    expected = terms["l2"] + terms["ssim"] + terms["focal"] + 0.1 * 0.5
    assert float(terms["total"]) == pytest.approx(float(expected), rel=1e-6)
    a_bf = np.asarray(jnp.asarray(a, jnp.bfloat16).astype(jnp.float32))
    assert float(terms["ssim"]) == pytest.approx(1 - np_ssim_map(a_bf, b).mean(), abs=1e-5)
    anomalib = draem_loss(a, b, logits, mask, focal="logits")
    assert float(anomalib["sspcab"]) == 0.0
    with pytest.raises(ValueError, match="focal"):
        draem_loss(a, b, logits, mask, focal="sigmoid")


def test_self_supervised_loss_is_reexported():
    assert losses.self_supervised_loss is layers.self_supervised_loss
    assert math.isclose(float(losses.self_supervised_loss({})), 0.0)


def test_losses_are_jittable(images):
    a, b = images
    value = jax.jit(ssim_loss)(a, b)
    assert float(value) == pytest.approx(float(ssim_loss(a, b)), abs=1e-6)
