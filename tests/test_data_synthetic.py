import time

import numpy as np
import pytest

from sspcab_jax.data import images, mvtec, synthetic


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_defaults_fast_and_complete(tmp_path):
    start = time.perf_counter()
    root = synthetic.write_synthetic_mvtec(tmp_path)
    assert time.perf_counter() - start < 5.0
    for category in synthetic.SYNTHETIC_CATEGORIES:
        train = mvtec.list_mvtec(root, category, "train", categories=None)
        test = mvtec.list_mvtec(root, category, "test", categories=None)
        assert len(train) == 60
        assert len(test) == 10 + 10 * len(synthetic.DEFECT_KINDS)
        assert {r.defect_type for r in test} == {"good", *synthetic.DEFECT_KINDS}


def test_deterministic_and_seed_dependent(tmp_path):
    kwargs = dict(
        categories=("gravel",), image_size=32, num_train=4, num_test_good=2, num_test_per_defect=2
    )
    a = _tree_bytes(synthetic.write_synthetic_mvtec(tmp_path / "a", seed=3, **kwargs))
    b = _tree_bytes(synthetic.write_synthetic_mvtec(tmp_path / "b", seed=3, **kwargs))
    c = _tree_bytes(synthetic.write_synthetic_mvtec(tmp_path / "c", seed=4, **kwargs))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_defect_images_have_plausible_masks(tmp_path):
    root = synthetic.write_synthetic_mvtec(
        tmp_path,
        categories=("brick",),
        image_size=64,
        num_train=8,
        num_test_good=2,
        num_test_per_defect=3,
    )
    train = [
        images.read_image(r.image_path)
        for r in mvtec.list_mvtec(root, "brick", "train", categories=None)
    ]
    assert len({t.tobytes() for t in train}) == len(train)  # distinct normal images
    source = mvtec.mvtec_source(root, "brick", "test", categories=None)
    for example in source:
        mask = example["mask"][..., 0] > 0
        if example["defect_type"] == "good":
            assert example["label"] == 0 and not mask.any()
        else:
            assert example["label"] == 1
            assert 0.002 < mask.mean() < 0.4, example["file_name"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Unknown synthetic categories"):
        synthetic.write_synthetic_mvtec(tmp_path, categories=("marble",))
    with pytest.raises(ValueError, match="Unknown defect kinds"):
        synthetic.write_synthetic_mvtec(tmp_path, defect_kinds=("dent",))


@pytest.mark.parametrize("category", synthetic.SYNTHETIC_CATEGORIES)
def test_warp_mask_holds_the_visibly_changed_pixels(category):
    # Generator version 2: the mask is where the swirl changed the colour by >= 8/255, so flat
    # brick faces swirled onto themselves are not labelled defective.
    rng = np.random.default_rng(7)
    texture = synthetic._texture(category)
    for _ in range(5):
        clean = synthetic._tint(synthetic._crop(texture, 64, rng, 2), synthetic._TINTS[category])
        warped, mask = synthetic._warp(clean.copy(), rng, None)
        changed = np.abs(warped - clean).max(axis=-1) >= 8 / 255
        assert mask.any()
        assert not (np.abs(warped - clean).max(axis=-1) > 0)[~mask].any()  # nothing else moves
        assert changed[mask].mean() > 0.75, category  # closed gaps in the grain, swirl centres
        assert mask.sum() >= 0.9 * changed.sum()
