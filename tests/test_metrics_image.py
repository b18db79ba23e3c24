import time

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn import metrics as skm

from sspcab_jax import metrics


def _tied_data(seed: int, n: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores quantised to a few levels, so most scores are tied."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) * levels + 0.6 * labels) / levels
    return scores, labels


@pytest.mark.parametrize("seed,n,levels", [(0, 50, 3), (1, 500, 10), (2, 5000, 40), (3, 7, 2)])
def test_auroc_and_ap_match_sklearn_with_ties(seed, n, levels):
    scores, labels = _tied_data(seed, n, levels)
    labels[:2] = [0, 1]  # both classes present
    assert len(np.unique(scores)) < n  # ties really occur
    assert metrics.auroc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), 1e-6)
    assert metrics.average_precision(scores, labels) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-6
    )


def test_roc_curve_points_match_sklearn_without_dropping():
    scores, labels = _tied_data(4, 300, 8)
    fpr, tpr, thr = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


def test_pixel_level_pools_all_pixels_like_sklearn_on_the_flattened_maps():
    rng = np.random.default_rng(5)
    masks = (rng.random((4, 16, 16)) < 0.1).astype(np.uint8)
    maps = np.round(rng.random((4, 16, 16)) * 5 + masks * 2).astype(np.float32) / 7
    flat_y, flat_s = masks.ravel(), maps.ravel()
    assert metrics.auroc(maps, masks) == pytest.approx(skm.roc_auc_score(flat_y, flat_s), 1e-6)
    assert metrics.average_precision(maps, masks) == pytest.approx(
        skm.average_precision_score(flat_y, flat_s), abs=1e-6
    )


def test_f1_max_hand_values():
    # Thresholds 0.9, 0.8, 0.7, 0.6, 0.5 with P = 3 positives; F1 = 2TP / (2TP + FP + FN) and
    # FN = P - TP: (TP, FP) = (1,0) 2/4, (1,1) 2/5, (2,1) 4/6, (3,1) 6/7, (3,2) 6/8 -> max 6/7.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 1, 0])
    assert metrics.f1_max(scores, labels) == pytest.approx(6 / 7)
    # Ties are one threshold (P = 2): t=0.5 gives (TP, FP) = (1, 1) -> 2/4; t=0.2 gives (2, 1)
    # -> 4/5.
    assert metrics.f1_max([0.5, 0.5, 0.2], [1, 0, 1]) == pytest.approx(4 / 5)
    # P = 1, one tie at the top: (TP, FP) = (1, 1) -> 2/3; a split tie would give 1.0.
    assert metrics.f1_max([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(2 / 3)


def test_f1_max_against_sklearn_precision_recall_curve():
    scores, labels = _tied_data(6, 400, 12)
    p, r, _ = skm.precision_recall_curve(labels, scores)
    denom = np.where(p + r > 0, p + r, 1)
    assert metrics.f1_max(scores, labels) == pytest.approx(np.max(2 * p * r / denom), 1e-9)


def _aupro_case() -> tuple[np.ndarray, np.ndarray]:
    """Two 3x4 images, 24 pixels: region A (2 px) in image 0, a diagonal pair B in image 1."""
    masks = np.zeros((2, 3, 4), dtype=np.uint8)
    maps = np.zeros((2, 3, 4))
    masks[0, 0, 0:2] = 1  # A: a1 at (0,0), a2 at (0,1)
    masks[1, 1, 1] = masks[1, 2, 2] = 1  # B: b1 at (1,1), b2 at (2,2), touching diagonally
    maps[0, 0, 0] = 0.9  # a1
    maps[0, 2, 3] = 0.8  # normal n1
    maps[1, 1, 1] = 0.7  # b1
    maps[0, 0, 1] = 0.6  # a2
    maps[1, 0, 3] = 0.6  # normal n2, tied with a2
    maps[1, 2, 2] = 0.1  # b2; the other 18 normal pixels score 0
    return maps, masks


def test_aupro_hand_value_8_connectivity():
    # 20 normal pixels, so each false positive adds 0.05 FPR. With 8-connectivity B is one
    # region: PRO = mean(overlap_A, overlap_B). Curve (FPR, PRO):
    # (0,0) -> t=.9 (0,.25) -> t=.8 (.05,.25) -> t=.7 (.05,.5) -> t=.6 (.10,.75) -> t=.1 (.10,1)
    # -> t=0 (1,1).
    # Up to 0.3: .05*.25 + .05*(.5+.75)/2 + .2*1 = .0125 + .03125 + .2 = .24375 -> /.3 = .8125.
    maps, masks = _aupro_case()
    assert metrics.aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.8125)
    # Up to 1.0: .0125 + .03125 + .9 = .94375.
    assert metrics.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.94375)
    # Cut inside a sloped segment: at FPR .075 the PRO is .5 + .25 * .5 = .625, so the area is
    # .0125 + .025 * (.5 + .625) / 2 = .0265625 -> / .075.
    assert metrics.aupro(maps, masks, fpr_limit=0.075) == pytest.approx(0.0265625 / 0.075)


def test_aupro_hand_value_4_connectivity_splits_the_diagonal_region():
    # With 4-connectivity B splits into b1 and b2: three regions of sizes 2, 1, 1.
    # PRO: t=.9 1/6, t=.7 (.5+1)/3 = .5, t=.6 (1+1)/3 = 2/3, t=.1 1.
    # Up to 0.3: .05/6 + .05*(.5+2/3)/2 + .2 = .2375 -> /.3.
    maps, masks = _aupro_case()
    assert metrics.aupro(maps, masks, connectivity=4) == pytest.approx(0.2375 / 0.3)


def test_aupro_perfect_map_is_one():
    rng = np.random.default_rng(7)
    masks = (rng.random((3, 20, 20)) < 0.2).astype(np.uint8)
    assert metrics.aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    # Any strictly separating map is also perfect.
    maps = np.where(masks == 1, 0.5 + 0.5 * rng.random(masks.shape), 0.4 * rng.random(masks.shape))
    assert metrics.aupro(maps, masks, fpr_limit=0.05) == pytest.approx(1.0)


def test_binarize_mask_keeps_only_exact_ones():
    soft = np.array([0.0, 0.5, 0.999, 1.0, 1.0 + 1e-7])
    np.testing.assert_array_equal(metrics.binarize_mask(soft), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(
        metrics.binarize_mask(np.array([0, 128, 254, 255], np.uint8)), [0, 0, 0, 1]
    )
    assert metrics.binarize_mask(soft).dtype == np.uint8
    with pytest.raises(ValueError, match="non-negative"):
        metrics.binarize_mask(np.array([-0.1, 1.0]))


def test_category_table_and_markdown():
    maps, masks = _aupro_case()
    row = metrics.category_metrics([0.1, 0.9], [0, 1], maps, masks)
    assert row.image_auroc == 1.0 and row.image_ap == 1.0 and row.image_f1_max == 1.0
    assert row.aupro == pytest.approx(0.8125)
    assert row.pixel_auroc == pytest.approx(skm.roc_auc_score(masks.ravel(), maps.ravel()))
    image_only = metrics.category_metrics([0.2, 0.1, 0.9], [0, 1, 1])
    assert image_only.image_auroc == pytest.approx(0.5)
    assert np.isnan(image_only.pixel_auroc)
    table = metrics.metrics_table({"bottle": row, "cable": image_only})
    assert list(table) == ["bottle", "cable", "mean"]
    assert table["mean"].image_auroc == pytest.approx(0.75)
    assert np.isnan(table["mean"].aupro)  # never a partial mean
    text = metrics.format_markdown_table(table)
    lines = text.splitlines()
    assert lines[0].startswith("| Category | Image AUROC |")
    assert lines[2].startswith("| bottle | 100.0 | 100.0 | 100.0 |")
    assert lines[2].endswith("| 81.2 |")
    assert lines[4].startswith("| **mean** | 75.0 |")
    assert "—" in lines[3]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: metrics.auroc([0.1, 0.2], [1, 1]), "no negative"),
        (lambda: metrics.auroc([0.1, 0.2], [0, 0]), "no positive"),
        (lambda: metrics.auroc([0.1, 0.2, 0.3], [0, 1]), "same shape"),
        (lambda: metrics.auroc([], []), "empty"),
        (lambda: metrics.auroc([0.1, np.nan], [0, 1]), "NaN"),
        (lambda: metrics.auroc([0.1, 0.2], [0, 0.5]), "binary"),
        (lambda: metrics.average_precision([0.1, 0.2], [0, 0]), "no positive"),
        (lambda: metrics.f1_max([0.1, 0.2], [0, 0]), "no positive"),
        (lambda: metrics.aupro(np.zeros((1, 2, 2)), np.zeros((1, 2, 2))), "no anomalous"),
        (lambda: metrics.aupro(np.zeros((1, 2, 2)), np.ones((1, 2, 2))), "no normal"),
        (lambda: metrics.aupro(np.zeros((2, 2)), np.eye(2)), r"\[N, H, W\]"),
        (lambda: metrics.aupro(*_aupro_case(), fpr_limit=0.0), "fpr_limit"),
        (lambda: metrics.aupro(*_aupro_case(), connectivity=6), "connectivity"),
        (lambda: metrics.metrics_table({}), "empty"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_pixel_auroc_on_a_million_pixels_is_fast():
    rng = np.random.default_rng(8)
    masks = rng.random((16, 256, 256)) < 0.05
    maps = (rng.random(masks.shape) + 0.3 * masks).astype(np.float32)
    start = time.perf_counter()
    value = metrics.auroc(maps, masks)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"pixel AUROC on {masks.size} pixels took {elapsed:.2f} s"
    # Independent check by the rank-sum (Mann-Whitney) formula with mid-ranks for float32 ties.
    ranks = rankdata(maps.ravel())
    n_pos = masks.sum()
    n_neg = masks.size - n_pos
    expected = (ranks[masks.ravel()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert value == pytest.approx(expected, abs=1e-6)
