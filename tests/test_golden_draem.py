"""DRAEM against golden values from an independent PyTorch implementation (no torch needed).

``tests/data/draem_golden.npz`` is written by ``tests/scripts/make_golden.py``: official DRAEM
(``model_unet.py`` names, widths 8 / 4) and anomalib's DRAEM with its SSPCAB bottleneck (widths
4 / 2), random weights and BatchNorm statistics, eval-mode outputs and one training step on a
fixed clean / synthetic batch with the official losses.

The references are float64 and the comparisons run in float64 (``jax.enable_x64``): a random deep
BatchNorm network amplifies float32 rounding to ~1e-4 in the outputs and ~1e-2 in first-layer
gradients (PyTorch against itself in float64 shows the same), so float32 on both sides could
not tell a 1e-5 implementation difference from noise. The float32 path is checked against the
same references at the float32 noise level.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspcab_jax.convert import draem_variables_from_torch
from sspcab_jax.models import Draem, anomaly_map, image_score
from sspcab_jax.training.steps import draem_loss_fn

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "data", "draem_golden.npz"))
CASES = {
    # name: (placement, widths, disc input order, channel order)
    "official": ("none", (6, 4), ("reconstruction", "image"), "bgr"),
    "anomalib": ("bottleneck", (4, 2), ("image", "reconstruction"), "rgb"),
}


def nhwc(x, dtype=np.float64):
    return jnp.asarray(np.moveaxis(np.asarray(x, dtype), 1, -1))


def f64(kwargs, variables):
    """The model and variables in float64 (call inside ``jax.enable_x64(True)``)."""
    model = Draem(**kwargs, dtype=jnp.float64, param_dtype=jnp.float64)
    return model, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)


def state_dict(case: str, net: str) -> dict[str, np.ndarray]:
    prefix = f"{case}/{net}/"
    return {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}


def converted(case: str):
    recon, disc = state_dict(case, "reconstructive"), state_dict(case, "discriminative")
    if case == "official":
        return draem_variables_from_torch(recon, disc)
    combined = {f"reconstructive_subnetwork.{k}": v for k, v in recon.items()}
    combined |= {f"discriminative_subnetwork.{k}": v for k, v in disc.items()}
    return draem_variables_from_torch(combined)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return request.param


def test_converter_infers_the_architecture_and_matches_init(case):
    placement, (rw, dw), order, channels = CASES[case]
    variables, kwargs, channel_order = converted(case)
    assert kwargs == dict(
        recon_width=rw,
        disc_width=dw,
        in_channels=3,
        sspcab_placement=placement,
        disc_input_order=order,
    )
    assert channel_order == channels
    model = Draem(**kwargs)
    init = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
    )
    shapes = jax.tree_util.tree_map(lambda x: x.shape, init)
    assert jax.tree_util.tree_map(np.shape, variables) == shapes


def test_eval_forward_matches_pytorch(case):
    variables, kwargs, _ = converted(case)
    want_rec = np.moveaxis(GOLDEN[f"{case}/eval/reconstruction"], 1, -1)
    want_logits = np.moveaxis(GOLDEN[f"{case}/eval/logits"], 1, -1)
    with jax.enable_x64(True):
        model, variables64 = f64(kwargs, variables)
        # Jitted: one compilation instead of hundreds of eagerly dispatched float64 ops.
        apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        rec, logits = apply(variables64, nhwc(GOLDEN["input"]))
        score = image_score(anomaly_map(logits), mode="mean_filter")
        rec, logits, score = np.asarray(rec), np.asarray(logits), np.asarray(score)
    np.testing.assert_allclose(rec, want_rec, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(score, GOLDEN[f"{case}/eval/score"], rtol=1e-5, atol=1e-6)
    # float32, as used: within the float32 noise of this network (measured <= 1.2e-3).
    rec32, logits32 = jax.jit(lambda v, x: Draem(**kwargs).apply(v, x, train=False))(
        variables, nhwc(GOLDEN["input"], np.float32)
    )
    np.testing.assert_allclose(rec32, want_rec, atol=3e-3)
    np.testing.assert_allclose(logits32, want_logits, atol=3e-3)


# Gradients kept by make_golden.py: PyTorch name -> (Flax path, layout change).
GRADS = {
    "r/encoder.block1.0.weight": (("reconstructive", "enc_block1_0", "conv", "kernel"), "conv"),
    "r/encoder.block4.4.weight": (("reconstructive", "enc_block4_1", "bn", "scale"), None),
    "r/decoder.db4.3.weight": (("reconstructive", "dec_db4_1", "conv", "kernel"), "conv"),
    "r/decoder.fin_out.0.bias": (("reconstructive", "fin_out", "bias"), None),
    "d/encoder_segment.block1.0.weight": (
        ("discriminative", "enc_block1_0", "conv", "kernel"),
        "conv",
    ),
    "d/decoder_segment.db_b.1.bias": (("discriminative", "dec_dbb_0", "bn", "bias"), None),
    "d/decoder_segment.fin_out.0.weight": (("discriminative", "fin_out", "kernel"), "conv"),
    # anomalib's masked_conv2 sees the top-right crop: corner 1 in row-major order.
    "r/encoder.block5.masked_conv2.weight": (
        ("reconstructive", "enc_block5_sspcab", "masked_conv", "kernel", 1),
        "conv",
    ),
    "r/encoder.block5.attention_module.fc1.weight": (
        ("reconstructive", "enc_block5_sspcab", "se", "fc1", "kernel"),
        "linear",
    ),
}


@pytest.fixture(scope="module")
def train_step(case):
    variables, kwargs, _ = converted(case)
    lam = float(GOLDEN["sspcab_lambda"])
    with jax.enable_x64(True):
        model, variables = f64(kwargs, variables)
        synth = {
            "augmented": nhwc(GOLDEN["train/augmented"]),
            "image": nhwc(GOLDEN["train/clean"]),
            "mask": nhwc(GOLDEN["train/mask"]),
        }
        grad_fn = jax.jit(
            jax.grad(
                lambda p: draem_loss_fn(
                    p, variables["batch_stats"], synth, model=model, sspcab_lambda=lam
                ),
                has_aux=True,
            )
        )
        grads, (terms, _) = grad_fn(variables["params"])
        return jax.tree_util.tree_map(np.asarray, (grads, terms))


def test_train_step_loss_terms_match_pytorch(case, train_step):
    _, terms = train_step
    for name in ("l2", "ssim", "focal", "sspcab", "total"):
        want = float(GOLDEN[f"{case}/train/loss/{name}"])
        np.testing.assert_allclose(float(terms[name]), want, rtol=1e-4, atol=1e-7, err_msg=name)
    if case == "anomalib":
        assert float(terms["sspcab"]) > 0.1  # the bottleneck block's loss is really counted


def test_train_step_gradients_match_pytorch(case, train_step):
    grads, _ = train_step
    names = [k for k in GOLDEN.files if k.startswith(f"{case}/train/grad/")]
    assert len(names) == (9 if case == "anomalib" else 7)
    for key in names:
        torch_name = key.split("/train/grad/")[1]
        path, layout = GRADS[torch_name]
        got = grads
        for part in path:
            got = got[part]
        want = GOLDEN[key]
        if layout == "conv":
            want = want.transpose(2, 3, 1, 0)
        elif layout == "linear":
            want = want.T
        scale = np.max(np.abs(want))
        assert scale > 0, torch_name
        err = np.max(np.abs(np.asarray(got) - want)) / scale
        assert err < 1e-4, f"{torch_name}: relative error {err:.2e}"
