"""The fresh held-out generator: its surfaces, defects and masks, read by the folder reader.

The layout test covers the third held-out set too (``benchmarks/heldout_third.py``).
"""

import numpy as np
import pytest

from benchmarks import heldout, heldout_fresh, heldout_third
from sspcab_jax.data import folder_source


@pytest.mark.parametrize(
    ("write", "categories", "kinds"),
    [
        (heldout_fresh.write_fresh, heldout_fresh.FRESH_CATEGORIES, heldout_fresh.FRESH_DEFECTS),
        (heldout_third.write_third, heldout_third.THIRD_CATEGORIES, heldout_third.THIRD_DEFECTS),
    ],
)
def test_writes_the_layout_the_folder_reader_loads(tmp_path, write, categories, kinds):
    root = write(tmp_path, image_size=32, num_train=2, num_test_good=1, num_test_per_defect=2)
    for category in categories:
        base = root / category
        assert sorted(p.name for p in (base / "test").iterdir()) == sorted([*kinds, "good"])
        test = folder_source(base / "test", "test", mask_dir=base / "ground_truth")
        assert len(folder_source(base / "train", "train")) == 2 and len(test) == 1 + 3 * 2
        for i in range(len(test)):
            example = test[i]
            assert example["image"].shape == (32, 32, 3)
            assert example["mask"].any() == bool(example["label"])


def test_weave_is_a_periodic_fabric():
    # The threads are 10 px apart and alternate warp / weft: the strongest line of the luma
    # spectrum (beyond the slow shading) is at 1/20 cycles per pixel in both directions.
    luma = heldout_fresh.weave_picture(size=512).mean(axis=-1)
    frequencies = np.fft.rfftfreq(luma.shape[0])
    for axis in (0, 1):
        profile = np.abs(np.fft.rfft(luma - luma.mean(), axis=axis)).mean(axis=1 - axis)
        profile[frequencies < 0.01] = 0
        assert abs(frequencies[profile.argmax()] - 1 / 20) < 0.003
        assert profile.max() > 5 * np.median(profile[1:])


def test_retina_crops_stay_inside_the_disc():
    picture = heldout_fresh.retina_picture()
    assert picture.shape[0] == picture.shape[1] and picture.shape[-1] == 3
    assert picture.mean(axis=-1).min() > 0.1  # no black border outside the fundus


@pytest.mark.parametrize("kind", heldout_fresh.FRESH_DEFECTS)
@pytest.mark.parametrize("category", heldout_fresh.FRESH_CATEGORIES)
def test_the_defect_changes_the_image_where_its_mask_is(kind, category):
    rng = np.random.default_rng(5)
    clean = heldout._crop(heldout_fresh.fresh_picture(category), 64, rng)
    image, mask = heldout_fresh.FRESH_DEFECT_FNS[kind](clean.copy(), rng)
    change = np.abs(image - clean).max(axis=-1)
    assert 0.01 < mask.mean() < 0.2
    if kind == "speckle":  # a third of the ellipse is set to black or white, nothing else
        assert change[~mask].max() == 0.0
        hit = np.all((image == 0) | (image == 1), axis=-1) & (change > 0)
        assert 0.2 < hit[mask].mean() < 0.45
    elif kind == "fade":  # soft rim: outside the mask at most half the fade, inside at least half
        assert change[mask].mean() > 2 * change[~mask].mean()
        spread = np.abs(clean - clean.mean(axis=(0, 1))).max(axis=-1)
        assert np.all(change[~mask] <= 0.5 * 0.85 * spread[~mask] + 1e-6)
        assert np.all(change[mask] >= 0.5 * 0.7 * spread[mask] - 1e-6)
    else:  # crease: shaded inside the band; outside it the far side only moves by 1-2 px
        assert (change[mask] > 4 / 255).mean() > 0.5
        # On a flat surface the shift is invisible and only the ridge's shading remains: outside
        # the band it is below half its peak (2 sigma out of a derivative-of-Gaussian).
        flat = np.full_like(clean, 0.5)
        image, mask = heldout_fresh.crease(flat, rng)
        shading = np.abs(image - flat).max(axis=-1)
        assert shading[~mask].max() <= 0.45 * shading.max()
        assert shading[mask].mean() > 3 * shading[~mask].mean()


def test_unknown_category_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="weave"):
        heldout_fresh.write_fresh(tmp_path, categories=("moon",))
