"""DRAEM weight conversion: formats, Lightning checkpoints, errors, checkpoint files."""

import os
import sys

import numpy as np
import pytest

from sspcab_jax.convert import draem_variables_from_torch, load_official_draem

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "data", "draem_golden.npz"))


def state_dict(case: str, net: str) -> dict[str, np.ndarray]:
    prefix = f"{case}/{net}/"
    return {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}


def anomalib_combined(prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for net in ("reconstructive", "discriminative"):
        for k, v in state_dict("anomalib", net).items():
            out[f"{prefix}{net}_subnetwork.{k}"] = v
    return out


def test_lightning_checkpoint_equals_plain_combined_dict():
    plain = draem_variables_from_torch(anomalib_combined())
    lightning = {"state_dict": anomalib_combined("model.") | {"image_threshold.value": 0.5}}
    wrapped = draem_variables_from_torch(lightning)
    assert wrapped.model_kwargs == plain.model_kwargs
    assert wrapped.input_channel_order == "rgb"
    flat_a = {str(p): np.asarray(v) for p, v in _flat(plain.variables)}
    flat_b = {str(p): np.asarray(v) for p, v in _flat(wrapped.variables)}
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        np.testing.assert_array_equal(value, flat_b[key])


def _flat(tree):
    import jax

    return jax.tree_util.tree_flatten_with_path(tree)[0]


def test_values_land_in_flax_layout():
    recon, disc = state_dict("official", "reconstructive"), state_dict("official", "discriminative")
    variables, _, order = draem_variables_from_torch(recon, disc)
    assert order == "bgr"
    layer = variables["params"]["reconstructive"]["dec_up2"]
    np.testing.assert_array_equal(
        layer["conv"]["kernel"], recon["decoder.up2.1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(layer["bn"]["scale"], recon["decoder.up2.2.weight"])
    stats = variables["batch_stats"]["discriminative"]["dec_dbb_1"]["bn"]
    np.testing.assert_array_equal(stats["var"], disc["decoder_segment.db_b.4.running_var"])


def test_one_error_lists_every_offending_key():
    recon, disc = state_dict("official", "reconstructive"), state_dict("official", "discriminative")
    del recon["decoder.db2.4.running_var"]
    recon["decoder.extra.weight"] = np.zeros(3, np.float32)
    disc["decoder_segment.up3.1.weight"] = np.zeros((4, 7, 3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        draem_variables_from_torch(recon, disc)
    message = str(info.value)
    assert "reconstructive: decoder.db2.4.running_var" in message
    assert "reconstructive: decoder.extra.weight" in message
    assert (
        "discriminative: decoder_segment.up3.1.weight: got (4, 7, 3, 3), expected (4, 8, 3, 3)"
        in message
    )
    assert message.count("\n") == 0


def test_single_official_dict_names_the_fix():
    with pytest.raises(ValueError, match="pass the reconstructive and the discriminative"):
        draem_variables_from_torch(state_dict("official", "reconstructive"))


def test_unexpected_top_level_key_in_combined_dict():
    combined = anomalib_combined() | {"something_else.weight": np.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys \['something_else.weight'\]"):
        draem_variables_from_torch(combined)


def test_missing_torch_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[torch\]"'):
        load_official_draem(tmp_path / "a.pckl", tmp_path / "a_seg.pckl")


def test_load_official_checkpoint_files(tmp_path):
    torch = pytest.importorskip("torch")
    recon, disc = state_dict("official", "reconstructive"), state_dict("official", "discriminative")
    to_torch = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in recon.items()}
    torch.save(to_torch, tmp_path / "draem.pckl")
    torch.save(
        {k: torch.tensor(np.asarray(v)) for k, v in disc.items()}, tmp_path / "draem_seg.pckl"
    )
    loaded = load_official_draem(tmp_path / "draem.pckl", tmp_path / "draem_seg.pckl")
    assert loaded.input_channel_order == "bgr"
    assert loaded.model.recon_width == 6 and loaded.model.disc_width == 4
    want = draem_variables_from_torch(recon, disc).variables
    got = loaded.variables["params"]["reconstructive"]["enc_block3_1"]["conv"]["kernel"]
    np.testing.assert_array_equal(
        got, want["params"]["reconstructive"]["enc_block3_1"]["conv"]["kernel"]
    )
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_official_draem(tmp_path / "missing.pckl", tmp_path / "draem_seg.pckl")
