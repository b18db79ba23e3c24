"""The third held-out generator: its surfaces, defects and masks (layout: test_heldout_fresh)."""

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import heldout, heldout_third


def test_wood_grain_runs_along_one_axis():
    # Rings cross the plank top to bottom: along a column the luma varies slowly, along a row it
    # alternates every ring (24 px), so horizontal gradients are far stronger than vertical.
    luma = heldout_third.wood_picture(size=256).mean(axis=-1)
    across = np.abs(np.diff(ndimage.gaussian_filter(luma, 2), axis=1)).mean()
    along = np.abs(np.diff(ndimage.gaussian_filter(luma, 2), axis=0)).mean()
    assert across > 2 * along


def _defect(kind, category="wood", seed=5):
    rng = np.random.default_rng(seed)
    clean = heldout._crop(heldout_third.third_picture(category), 64, rng)
    image, mask = heldout_third.THIRD_DEFECT_FNS[kind](clean.copy(), rng)
    return clean, image, mask


@pytest.mark.parametrize("category", heldout_third.THIRD_CATEGORIES)
def test_pixelate_is_blocks_of_their_mean_inside_the_ellipse_only(category):
    clean, image, mask = _defect("pixelate", category)
    assert 0.01 < mask.mean() < 0.2
    np.testing.assert_array_equal(image[~mask], clean[~mask])
    block = 4  # 64 // 16
    rows, cols = np.nonzero(mask)
    for r, c in zip(rows[::7], cols[::7], strict=True):
        top, left = r // block * block, c // block * block
        expected = clean[top : top + block, left : left + block].mean(axis=(0, 1))
        np.testing.assert_allclose(image[r, c], expected, atol=1e-6)


def test_bulge_magnifies_a_linear_ramp_at_its_centre():
    # On a horizontal ramp the magnified centre has a smaller slope (1/m of the original).
    ramp = np.broadcast_to(np.linspace(0, 1, 64)[None, :, None], (64, 64, 3)).copy()
    rng = np.random.default_rng(3)
    image, mask = heldout_third.bulge(ramp, rng)
    rng = np.random.default_rng(3)
    centre = rng.uniform(0.3, 0.7, 2) * 64
    rng.uniform(0.14, 0.22)
    magnification = rng.uniform(1.6, 2.0)
    r, c = np.round(centre).astype(int)
    slope = (image[r, c + 1, 0] - image[r, c - 1, 0]) / (ramp[r, c + 1, 0] - ramp[r, c - 1, 0])
    assert slope == pytest.approx(1 / magnification, abs=0.03)
    assert mask[r, c] and 0.01 < mask.mean() < 0.2
    far = ~ndimage.binary_dilation(mask, iterations=12)
    np.testing.assert_allclose(image[far], ramp[far], atol=1e-6)


@pytest.mark.parametrize("category", heldout_third.THIRD_CATEGORIES)
def test_negative_inverts_inside_and_keeps_outside(category):
    clean, image, mask = _defect("negative", category)
    weight_inside = (image[mask] - clean[mask]) / (1 - 2 * clean[mask] + 1e-9)
    good = np.abs(1 - 2 * clean[mask]) > 0.2  # where inversion is visible
    assert np.all(weight_inside[good] >= 0.35 - 1e-3)
    change = np.abs(image - clean).max(axis=-1)
    assert change[mask].mean() > 3 * change[~mask].mean()


def test_unknown_category_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="wood"):
        heldout_third.write_third(tmp_path, categories=("weave",))
