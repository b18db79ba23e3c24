"""``benchmarks.per_kind``: per-defect-kind AUROC, checked against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks import per_kind


def test_each_kind_is_scored_against_the_good_images_only():
    rng = np.random.default_rng(0)
    kinds = ["good"] * 6 + ["hole"] * 4 + ["warp"] * 5
    scores = rng.random(15)
    maps = rng.random((15, 8, 8))
    masks = np.zeros((15, 8, 8))
    masks[6:, 2:5, 2:5] = 1.0
    masks[11, 0, 0] = 0.4  # below one half: not a defective pixel
    table = per_kind.per_kind_auroc(scores, maps, masks, kinds)
    assert list(table) == ["hole", "warp"]
    for kind, rows in (("hole", np.r_[0:6, 6:10]), ("warp", np.r_[0:6, 10:15])):
        labels = np.array([kinds[i] != "good" for i in rows])
        image, pixel = table[kind]
        assert image == pytest.approx(roc_auc_score(labels, scores[rows]), abs=1e-12)
        truth = (masks[rows] >= 0.5).reshape(-1)
        assert pixel == pytest.approx(roc_auc_score(truth, maps[rows].reshape(-1)), abs=1e-12)


def test_without_good_images_it_says_so():
    with pytest.raises(ValueError, match="good test images"):
        per_kind.per_kind_auroc(np.zeros(2), np.zeros((2, 4, 4)), np.ones((2, 4, 4)), ["a", "b"])


def test_a_trained_run_gets_one_row_per_test_folder(trained_run, capsys):
    workdir, _ = trained_run
    per_kind.main([str(workdir)])
    printed = capsys.readouterr().out
    folders = sorted(p.name for p in (workdir / "data").rglob("test/*") if p.name != "good")
    assert folders and f"| run | {' | '.join(folders)} |" in printed
    assert printed.count(f"| {workdir} |") == 1
