"""ConvAutoencoder variants against a PyTorch implementation (``tests/scripts/make_golden.py``)."""

import os

import numpy as np
import pytest

from configs.autoencoder_variants import parse_variant
from sspcab_jax.convert import sspcab_params_from_torch
from sspcab_jax.models import ConvAutoencoder

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "data", "autoencoder_golden.npz"))
VARIANTS = sorted({k.split("/")[1] for k in GOLDEN.files if k.count("/") >= 2})


def params_from_torch(sd: dict) -> dict:
    params = {}
    for name in {k.split(".")[0] for k in sd}:
        if name.startswith("sspcab_"):
            params[name] = sspcab_params_from_torch(sd, prefix=f"{name}.", naming="official")
        else:
            w = np.asarray(sd[f"{name}.weight"], np.float32)
            params[name] = {
                "kernel": w.transpose(2, 3, 1, 0),
                "bias": np.float32(sd[f"{name}.bias"]),
            }
    return params


def test_every_table1_variant_is_covered():
    assert {
        "none",
        "early",
        "middle",
        "late",
        "early+middle",
        "early+late",
        "middle+late",
        "early+middle+late",
        "late_m3",
    } == set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_pytorch(variant):
    positions, masked_centre, _ = parse_variant(variant)
    prefix = f"autoencoder/{variant}/weights/"
    sd = {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}
    x = np.moveaxis(np.asarray(GOLDEN["autoencoder/input"], np.float32), 1, -1)
    model = ConvAutoencoder(channels=1, sspcab_positions=positions, masked_centre=masked_centre)
    out = model.apply({"params": params_from_torch(sd)}, x)
    want = np.moveaxis(GOLDEN[f"autoencoder/{variant}/output"], 1, -1)
    assert np.abs(want).max() > 0.05  # the signal survives the seven layers
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
