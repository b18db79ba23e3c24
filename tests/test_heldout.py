"""The held-out generator: MVTec layout read by the folder reader, masks where the defect is."""

import numpy as np
import pytest

from benchmarks import heldout
from sspcab_jax.data import folder_source


def test_writes_the_layout_the_folder_reader_loads(tmp_path):
    root = heldout.write_heldout(
        tmp_path,
        categories=("moon",),
        image_size=32,
        num_train=3,
        num_test_good=2,
        num_test_per_defect=2,
    )
    base = root / "moon"
    assert sorted(p.name for p in (base / "train" / "good").iterdir()) == [
        "000.png",
        "001.png",
        "002.png",
    ]
    assert sorted(p.name for p in (base / "test").iterdir()) == [
        "blur",
        "discolour",
        "good",
        "line",
    ]
    train = folder_source(base / "train", "train")
    test = folder_source(base / "test", "test", mask_dir=base / "ground_truth")
    assert len(train) == 3 and len(test) == 2 + 3 * 2
    for i in range(len(test)):
        example = test[i]
        assert example["image"].shape == (32, 32, 3) and example["mask"].shape == (32, 32, 1)
        assert example["label"] == (example["defect_type"] != "good")
        assert example["mask"].any() == bool(example["label"])


@pytest.mark.parametrize("kind", heldout.HELDOUT_DEFECTS)
@pytest.mark.parametrize("category", heldout.HELDOUT_CATEGORIES)
def test_the_defect_changes_the_image_inside_its_mask(kind, category):
    rng = np.random.default_rng(3)
    clean = heldout._crop(heldout._picture(category), 64, rng)
    image, mask = heldout._DEFECTS[kind](clean.copy(), rng)
    change = np.abs(image - clean).max(axis=-1)
    assert 0.005 < mask.mean() < 0.2
    if kind == "discolour":  # soft edges: the mask is where the shift reaches half its peak
        assert change[mask].min() >= 0.5 * change.max() - 1e-3
        assert change[~mask].max() < 0.5 * change.max() + 1e-3
    else:  # pasted: nothing changes outside the mask, most pixels inside do
        assert change[~mask].max() == 0.0
        assert (change[mask] > 2 / 255).mean() > 0.5


def test_same_seed_same_tree_and_bad_arguments(tmp_path):
    kwargs = dict(
        categories=("ihc",), image_size=16, num_train=2, num_test_good=1, num_test_per_defect=1
    )
    a = heldout.write_heldout(tmp_path / "a", **kwargs) / "ihc"
    b = heldout.write_heldout(tmp_path / "b", **kwargs) / "ihc"
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with pytest.raises(ValueError, match="held-out categories"):
        heldout.write_heldout(tmp_path, categories=("brick",))
    with pytest.raises(ValueError, match="image_size"):
        heldout.write_heldout(tmp_path, image_size=33)


def test_the_baseline_benchmark_reads_the_tree(tmp_path, capsys):
    from benchmarks import local_baseline

    root = heldout.write_heldout(
        tmp_path,
        categories=("ihc",),
        image_size=32,
        num_train=10,
        num_test_good=3,
        num_test_per_defect=2,
    )
    results = local_baseline.run("folder", str(root), ("ihc",), 32, workdir=str(tmp_path / "w"))
    metrics = results["ihc"]
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("image_auroc", "pixel_auroc", "aupro"))
    assert "| ihc |" in capsys.readouterr().out
