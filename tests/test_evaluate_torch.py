"""``train.evaluate --torch_*``: PyTorch DRAEM weights evaluated with our metrics, fed BGR.

The weights are the official-format state dicts of the golden file (written by a PyTorch
implementation of the official architecture); reading ``.pckl`` files needs torch, so the file
reader is replaced by one returning them. The expected metrics are computed here independently:
the network applied to BGR images, the official score (softmax, 21x21 zero-padded mean, max) with
SciPy, AUROC with scikit-learn.
"""

import json
import os

import jax
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from configs import test as test_config
from sspcab_jax import convert, data
from sspcab_jax.models import Draem
from sspcab_jax.training.data_setup import build_sources
from train import cli, evaluate

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "data", "draem_golden.npz"))


def _official_weights():
    nets = {}
    for net in ("reconstructive", "discriminative"):
        prefix = f"official/{net}/"
        nets[net] = {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}
    variables, kwargs, order = convert.draem_variables_from_torch(
        nets["reconstructive"], nets["discriminative"]
    )
    return convert.LoadedDraem(Draem(**kwargs), variables, kwargs, order)


@pytest.fixture
def official(monkeypatch):
    loaded = _official_weights()
    paths = []

    def fake_load(reconstructive, discriminative=None):
        paths.append((reconstructive, discriminative))
        return loaded

    monkeypatch.setattr(convert, "load_official_draem", fake_load)
    return loaded, paths


def _expected_auroc(loaded, workdir):
    _, test = build_sources(test_config.get_config(), workdir)
    batches = list(data.eval_batches(test, batch_size=64, image_size=32))
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    _, logits = loaded.model.apply(loaded.variables, images[..., ::-1], train=False)
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))[..., 1]
    filtered = ndimage.uniform_filter(probs, size=(1, 21, 21), mode="constant", cval=0.0)
    return roc_auc_score(labels, filtered.reshape(len(probs), -1).max(axis=1))


def test_official_weights_are_evaluated_on_bgr_input(official, tmp_path):
    loaded, paths = official
    assert loaded.input_channel_order == "bgr"
    workdir = tmp_path / "eval"
    summary = evaluate.main(
        [
            "evaluate",
            "--torch_reconstructive=bottle.pckl",
            "--torch_discriminative=bottle_seg.pckl",
            "--config=configs/test.py",
            f"--workdir={workdir}",
        ]
    )
    assert paths == [("bottle.pckl", "bottle_seg.pckl")]
    written = json.loads((workdir / "metrics.json").read_text())
    assert written["channel_order"] == "bgr" and written["sspcab_placement"] == "none"
    assert written["weights"] == {
        "reconstructive": "bottle.pckl",
        "discriminative": "bottle_seg.pckl",
    }
    expected = _expected_auroc(loaded, tmp_path / "reference")
    np.testing.assert_allclose(summary["image_auroc"], expected, atol=1e-6)
    np.testing.assert_allclose(written["image_auroc"], expected, atol=1e-6)


def test_torch_weights_need_a_dataset_config(official, tmp_path):
    with pytest.raises(cli.CommandError, match="--config"):
        evaluate.main(["evaluate", "--torch_reconstructive=a.pckl", f"--workdir={tmp_path}"])
