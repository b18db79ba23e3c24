import dataclasses
import logging

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageOps

from sspcab_jax.synthesis import (
    ANOMALIB_CONFIG,
    AUGMENTERS,
    SynthesisConfig,
    augment,
    draem,
    random_augment,
    synthesize,
    synthesize_one,
)

RNG = np.random.default_rng(0)
IMAGE = (RNG.integers(0, 256, (16, 16, 3)) / 255.0).astype(np.float32)


def _synth(config: SynthesisConfig | None = None):
    config = config or SynthesisConfig()
    return jax.jit(lambda k, x, s: synthesize(k, x, s, config=config))


# ------------------------------------------------------------------------------ augmenters
def test_invert_exact():
    np.testing.assert_array_equal(augment.invert(jax.random.key(0), IMAGE), 1.0 - IMAGE)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_posterize_exact(bits):
    levels = np.round(IMAGE * 255).astype(np.uint8)
    want = (levels & np.uint8((0xFF << (8 - bits)) & 0xFF)) / 255.0
    np.testing.assert_allclose(augment.posterize_bits(IMAGE, bits), want, atol=1e-7)


def test_solarize_exact():
    for seed in range(4):
        key = jax.random.key(seed)
        k_apply, k_threshold = jax.random.split(key)
        threshold = float(jax.random.uniform(k_threshold, (), minval=32.0, maxval=128.0)) / 255
        applied = bool(jax.random.bernoulli(k_apply, 0.5))
        want = np.where(IMAGE >= threshold, 1.0 - IMAGE, IMAGE) if applied else IMAGE
        np.testing.assert_allclose(augment.solarize(key, IMAGE), want, atol=1e-7)


def test_gamma_hand_value():
    key = jax.random.key(1)
    gamma = np.asarray(jax.random.uniform(key, (3,), minval=0.5, maxval=2.0))
    out = np.asarray(augment.gamma_contrast(key, jnp.full((2, 2, 3), 0.25)))
    np.testing.assert_allclose(out[0, 0], 0.25**gamma, rtol=1e-5)
    assert out[0, 0, 0] != out[0, 0, 1]  # per channel


def _pil(fn, levels: np.ndarray) -> np.ndarray:
    return np.asarray(fn(Image.fromarray(levels.astype(np.uint8)))) / 255.0


def test_equalize_matches_pil():
    # Known histograms: a skewed one, a narrow band, and a constant channel (unchanged).
    rng = np.random.default_rng(1)
    levels = np.stack(
        [
            np.clip(rng.exponential(30, (32, 32)), 0, 255),
            rng.integers(100, 110, (32, 32)),
            np.full((32, 32), 77),
        ],
        axis=-1,
    ).astype(np.uint8)
    out = augment.equalize(jnp.asarray(levels / 255.0, jnp.float32))
    np.testing.assert_allclose(out, _pil(ImageOps.equalize, levels), atol=1e-6)


@pytest.mark.parametrize("cutoff", [0, 5, 20])
def test_autocontrast_matches_pil(cutoff):
    rng = np.random.default_rng(2)
    levels = np.stack(
        [rng.integers(40, 200, (32, 32)), rng.normal(128, 20, (32, 32)), np.full((32, 32), 9)],
        axis=-1,
    )
    levels = np.clip(levels, 0, 255).astype(np.uint8)
    out = augment.autocontrast_cutoff(jnp.asarray(levels / 255.0, jnp.float32), cutoff)
    want = _pil(lambda im: ImageOps.autocontrast(im, cutoff=cutoff), levels)
    # PIL rounds in doubles: one level lower where the exact value is an integer.
    diff = np.abs(np.asarray(out) - want)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).mean() < 0.05


def test_sharpen_identity_and_smoothing():
    np.testing.assert_allclose(augment.sharpen(IMAGE, 1.0), IMAGE, atol=1e-6)
    delta = np.zeros((5, 5, 3), np.float32)
    delta[2, 2] = 1.0
    smooth = np.asarray(augment.sharpen(delta, 0.0))
    assert smooth[2, 2, 0] == pytest.approx(5 / 13) and smooth[1, 1, 0] == pytest.approx(1 / 13)


def test_hue_saturation_zero_shift_is_identity():
    np.testing.assert_allclose(augment.shift_hue_saturation(IMAGE, 0.0, 0.0), IMAGE, atol=1e-5)
    grey = jnp.full((4, 4, 3), 0.5)
    np.testing.assert_allclose(augment.shift_hue_saturation(grey, 0.3, 0.0), grey, atol=1e-6)


def test_all_augmenters_jit_once_and_stay_in_range():
    keys = jax.random.split(jax.random.key(0), 4)
    fn = jax.jit(jax.vmap(lambda k: jnp.stack([a(k, IMAGE) for a in AUGMENTERS])))
    out = np.asarray(fn(keys))
    assert out.shape == (4, 10, 16, 16, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0

    @jax.jit
    @chex.assert_max_traces(n=1)
    def aug(key):
        return random_augment(key, IMAGE)

    results = [np.asarray(aug(jax.random.key(i))) for i in range(4)]
    assert len({r.tobytes() for r in results}) > 1


# ------------------------------------------------------------------------------ synthesis
def _data(b=4, s=3, h=32, w=32):
    rng = np.random.default_rng(3)
    return (
        jnp.asarray(rng.random((b, h, w, 3)), jnp.float32),
        jnp.asarray(rng.random((s, h, w, 3)), jnp.float32),
    )


def test_synthesize_outputs_and_labels():
    images, sources = _data(b=64)
    out = _synth()(jax.random.key(0), images, sources)
    assert out["image"].shape == images.shape and out["augmented"].shape == images.shape
    assert out["mask"].shape == (64, 32, 32, 1) and out["has_anomaly"].shape == (64,)
    mask = np.asarray(out["mask"])
    assert set(np.unique(mask)) <= {0.0, 1.0}
    label = np.asarray(out["has_anomaly"])
    np.testing.assert_array_equal(label, mask.reshape(64, -1).max(axis=1))
    clean = label == 0
    np.testing.assert_array_equal(out["augmented"][clean], out["image"][clean])
    assert not np.array_equal(out["augmented"][~clean], out["image"][~clean])
    assert 0.0 <= float(out["augmented"].min()) and float(out["augmented"].max()) <= 1.0


def test_anomaly_fraction_about_half():
    # About 10 % of 32x32 Perlin masks are empty (label 0): expect ~0.45.
    images, sources = _data(b=256, h=32, w=32)
    label = np.asarray(_synth()(jax.random.key(1), images, sources)["has_anomaly"])
    assert abs(label.mean() - 0.5) < 0.1


def test_deterministic_and_key_dependent_without_retracing():
    images, sources = _data(b=8)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def fn(key, x, s):
        return synthesize(key, x, s)

    a = fn(jax.random.key(5), images, sources)
    b = fn(jax.random.key(5), images, sources)
    chex.assert_trees_all_equal(a, b)
    outs = [fn(jax.random.key(i), images, sources) for i in range(4)]
    assert len({np.asarray(o["augmented"]).tobytes() for o in outs}) == 4
    assert len({np.asarray(o["mask"]).tobytes() for o in outs}) > 1


def test_vmap_path_equals_loop_path_and_vmappable():
    images, sources = _data(b=2, h=16, w=16)
    key = jax.random.key(2)
    looped = _synth()(key, images, sources)
    vmapped = _synth(SynthesisConfig(loop=False))(key, images, sources)
    chex.assert_trees_all_close(looped, vmapped, atol=1e-5)
    keys = jax.random.split(key, 2)
    one = jax.jit(jax.vmap(lambda k, x: synthesize_one(k, x, sources)))(keys, images)
    chex.assert_trees_all_close(one, looped, atol=1e-5)


def test_non_power_of_two_size():
    images, sources = _data(b=2, h=48, w=80)
    out = _synth()(jax.random.key(0), images, sources)
    assert out["mask"].shape == (2, 48, 80, 1)


def test_perlin_fallback_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(draem, "_fallback_logged", False)
    images, _ = _data(b=2, h=16, w=16)
    config = dataclasses.replace(ANOMALIB_CONFIG, fallback_texture="colour", clean_prob=0.0)
    fn = jax.jit(lambda k, x: synthesize(k, x, None, config=config))
    with caplog.at_level(logging.WARNING, logger=draem.__name__):
        outs = [fn(jax.random.key(i), images) for i in range(3)]
    assert sum("Perlin-noise textures" in r.getMessage() for r in caplog.records) == 1
    assert all(o["augmented"].shape == images.shape for o in outs)
    np.testing.assert_array_equal(outs[0]["image"], images)  # anomalib: no rotation


def test_bad_shapes_raise():
    images, sources = _data()
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\], got \(4, 32, 32, 1\)"):
        synthesize(jax.random.key(0), images[..., :1], sources)
    with pytest.raises(ValueError, match=r"sources must be \[S, 32, 32, 3\], got \(3, 8, 32, 3\)"):
        synthesize(jax.random.key(0), images, sources[:, :8])


def test_show_synthesis_writes_png(tmp_path):
    from train import show_synthesis

    path = show_synthesis.main(
        ["show_synthesis", f"--out={tmp_path / 'grid.png'}", "--num=2", "--size=32"]
    )
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    assert grid.std() > 0


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_perlin_source_prob_replaces_that_share_of_pool_sources(prob):
    # A flat 0.7 pool, no augmenters, full opacity: inside the mask the pasted texture is
    # visible as is, flat for a pool source and varying for a Perlin one.
    config = SynthesisConfig(
        clean_prob=0.0,
        opacity_range=(1.0, 1.0),
        rotate_prob=0.0,
        num_augmenters=0,
        perlin_source_prob=prob,
    )
    images = jnp.zeros((200, 32, 32, 3))
    sources = jnp.full((4, 32, 32, 3), 0.7)
    out = _synth(config)(jax.random.key(4), images, sources)
    pasted = np.asarray(out["augmented"])[..., 0]
    inside = np.asarray(out["mask"])[..., 0] > 0
    perlin = np.array(
        [np.any(t[m] != np.float32(0.7)) for t, m in zip(pasted, inside, strict=True) if m.any()]
    )
    assert len(perlin) > 150
    assert abs(perlin.mean() - prob) < 0.1, perlin.mean()
