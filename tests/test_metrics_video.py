import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from sspcab_jax import metrics
from sspcab_jax.metrics import ScoredRegions, TrackRegions

# --- frame-level AUC --------------------------------------------------------------------------

# Video A is perfectly ranked, video B too, but B's normal frame (0.85) outscores A's abnormal
# frame (0.8): per-video AUCs are both 1 while the pooled ranking has one wrong pair out of 9.
SCORES_A, LABELS_A = np.array([0.1, 0.2, 0.8]), np.array([0, 0, 1])
SCORES_B, LABELS_B = np.array([0.85, 0.9, 0.95]), np.array([0, 1, 1])
# Video C has no abnormal frame.
SCORES_C, LABELS_C = np.array([0.3, 1.0]), np.array([0, 0])


def test_micro_and_macro_differ_with_hand_values():
    scores, labels = [SCORES_A, SCORES_B], [LABELS_A, LABELS_B]
    # Micro: negatives {.1, .2, .85}, positives {.8, .9, .95}; only (.8 < .85) is wrong -> 8/9.
    assert metrics.micro_auc(scores, labels) == pytest.approx(8 / 9)
    # Macro: mean(1, 1) = 1.
    assert metrics.macro_auc(scores, labels) == pytest.approx(1.0)


def test_macro_single_class_video_is_skipped_or_padded():
    scores = [SCORES_A, SCORES_B, SCORES_C]
    labels = [LABELS_A, LABELS_B, LABELS_C]
    # Unpadded: C has one class, its AUC is NaN and left out -> mean(1, 1).
    assert metrics.macro_auc(scores, labels) == pytest.approx(1.0)
    # Padded: A -> [0 .1 .2 .8 1] / [0 0 0 1 1]: AUC 1; B likewise 1. C -> scores [0 .3 1 1],
    # labels [0 0 0 1]: the positive (1) beats 0 and .3 and ties 1.0 -> (2 + .5) / 3 = 5/6.
    # Mean (1 + 1 + 5/6) / 3 = 17/18.
    assert metrics.macro_auc(scores, labels, pad_each_video=True) == pytest.approx(17 / 18)
    # Micro over all three: negatives {.1,.2,.85,.3,1}, positives {.8,.9,.95}: .8 beats 3,
    # .9 beats 4, .95 beats 4 -> 11/15.
    assert metrics.micro_auc(scores, labels) == pytest.approx(11 / 15)


def test_frame_auc_errors():
    with pytest.raises(ValueError, match="single class"):
        metrics.macro_auc([SCORES_C], [LABELS_C])
    with pytest.raises(ValueError, match="label sequences"):
        metrics.micro_auc([SCORES_A], [LABELS_A, LABELS_B])
    with pytest.raises(ValueError, match="video 1"):
        metrics.micro_auc([SCORES_A, SCORES_B], [LABELS_A, LABELS_B[:2]])
    with pytest.raises(ValueError, match="binary"):
        metrics.micro_auc([SCORES_A], [np.array([0, 2, 1])])
    with pytest.raises(ValueError, match="no videos"):
        metrics.macro_auc([], [])


# --- smoothing --------------------------------------------------------------------------------


def test_gaussian_smooth_hand_value():
    # sigma 1, truncate 1 -> radius 1, kernel (e^-.5, 1, e^-.5) / (1 + 2 e^-.5).
    side = np.exp(-0.5) / (1 + 2 * np.exp(-0.5))
    centre = 1 / (1 + 2 * np.exp(-0.5))
    out = metrics.gaussian_smooth(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), 1.0, truncate=1.0)
    np.testing.assert_allclose(out, [0, side, centre, side, 0])
    # 'constant' pads with zeros: the first frame loses the weight beyond the edge.
    out = metrics.gaussian_smooth(np.array([1.0, 0.0, 0.0]), 1.0, truncate=1.0)
    np.testing.assert_allclose(out, [centre, side, 0])


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("sigma", [0.7, 3.0, 11.0])
def test_gaussian_smooth_matches_scipy(mode, sigma):
    scores = np.random.default_rng(0).random(120)
    expected = gaussian_filter1d(scores, sigma, mode=mode, truncate=4.0)
    np.testing.assert_allclose(metrics.gaussian_smooth(scores, sigma, mode=mode), expected)


def test_minmax_and_postprocess():
    np.testing.assert_allclose(metrics.minmax_normalise(np.array([2.0, 4.0, 3.0])), [0, 1, 0.5])
    np.testing.assert_array_equal(metrics.minmax_normalise(np.full(3, 7.0)), np.zeros(3))
    impulse = np.array([0.0, 0.0, 4.0, 0.0, 0.0])
    (out,) = metrics.postprocess_scores([impulse], sigma=1.0, normalise=True)
    smoothed = gaussian_filter1d(impulse, 1.0, mode="constant")
    np.testing.assert_allclose(out, (smoothed - smoothed.min()) / np.ptp(smoothed))
    (raw,) = metrics.postprocess_scores([impulse])
    np.testing.assert_array_equal(raw, impulse)
    with pytest.raises(ValueError, match="sigma"):
        metrics.gaussian_smooth(impulse, 0.0)
    with pytest.raises(ValueError, match="mode"):
        metrics.gaussian_smooth(impulse, 1.0, mode="wrap")
    with pytest.raises(ValueError, match="non-empty"):
        metrics.minmax_normalise(np.zeros(0))


# --- RBDC / TBDC ------------------------------------------------------------------------------


def _pred(rows):
    """Rows of (frame, x_min, y_min, x_max, y_max, score)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return ScoredRegions(frames=rows[:, 0], boxes=rows[:, 1:5], scores=rows[:, 5])


def _gt(rows):
    """Rows of (track_id, frame, x_min, y_min, x_max, y_max)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
    return TrackRegions(frames=rows[:, 1], boxes=rows[:, 2:6], track_ids=rows[:, 0])


def test_rbdc_tbdc_two_videos_hand_values():
    # Video 0 (6 frames): track 0 in frames 0-1. Video 1 (4 frames): track 0 in frames 0-2 and
    # track 1 in frame 3, never detected. 6 GT regions, 3 tracks, 10 test frames in all.
    gt = [
        _gt([(0, 0, 0, 0, 9, 9), (0, 1, 0, 0, 9, 9)]),
        _gt([(0, f, 20, 20, 29, 29) for f in range(3)] + [(1, 3, 50, 50, 59, 59)]),
    ]
    pred = [
        _pred(
            [
                (0, 0, 0, 9, 9, 0.9),  # TP: first GT region of v0 track 0 (track detected)
                (3, 100, 100, 109, 109, 0.7),  # FP: no GT in frame 3 of video 0
                (0, 1, 1, 10, 10, 0.5),  # IoU 81/119 with an already-matched region: neither
                (1, 60, 60, 69, 69, 0.4),  # FP: GT in the frame but IoU 0
            ]
        ),
        _pred(
            [
                (0, 20, 20, 29, 29, 0.8),  # TP: v1 track 0 detected
                (1, 20, 20, 29, 29, 0.6),  # TP
            ]
        ),
    ]
    # Score order .9 .8 .7 .6 .5 .4 -> cumulative (FP, TP, tracks):
    # (0,1,1) (0,2,2) (1,2,2) (1,3,2) (1,3,2) (2,3,2); FPR = FP / 10, RBDR = TP / 6, TBDR / 3.
    result = metrics.rbdc_tbdc(pred, gt, num_frames=10)
    np.testing.assert_allclose(result.fpr, [0, 0, 0, 0.1, 0.1, 0.1, 0.2, 1.0])
    np.testing.assert_allclose(result.rbdr, np.array([0, 1, 2, 2, 3, 3, 3, 3]) / 6)
    np.testing.assert_allclose(result.tbdr, np.array([0, 1, 2, 2, 2, 2, 2, 2]) / 3)
    # RBDC = .1 * 2/6 + .1 * 3/6 + .8 * 3/6 (flat extension to FPR 1) = 2/60 + 3/60 + 24/60.
    assert result.rbdc == pytest.approx(29 / 60)
    # TBDC = 1 * 2/3: two of three tracks are detected at FPR 0.
    assert result.tbdc == pytest.approx(2 / 3)
    assert metrics.rbdc(pred, gt, 10) == pytest.approx(29 / 60)
    assert metrics.tbdc(pred, gt, 10) == pytest.approx(2 / 3)


def test_perfect_detector_from_masks_gives_one():
    masks = np.zeros((2, 6, 12, 12), dtype=np.uint8)
    for t in range(4):
        masks[0, t, 2:5, 1 + t : 4 + t] = 1  # an object moving right
    masks[1, 2:5, 8:11, 8:11] = 1
    masks[1, 3, 0:2, 0:2] = 1  # a second, short anomaly
    gt = [metrics.tracks_from_masks(m) for m in masks]
    pred = [metrics.regions_from_maps(m.astype(np.float32), threshold=0.5) for m in masks]
    result = metrics.rbdc_tbdc(pred, gt, num_frames=12)
    assert result.rbdc == pytest.approx(1.0)
    assert result.tbdc == pytest.approx(1.0)


def test_one_prediction_matches_several_new_regions():
    gt = [_gt([(0, 0, 0, 0, 9, 9), (1, 0, 10, 0, 19, 9)])]
    # IoU of (0,0,19,9) with each GT box: 100 / 200 = 0.5 -> TP = 2 at once.
    pred = [_pred([(0, 0, 0, 19, 9, 1.0), (0, 50, 50, 59, 59, 0.5)])]
    result = metrics.rbdc_tbdc(pred, gt, num_frames=4)
    np.testing.assert_allclose(result.rbdr, [0, 1, 1, 1])
    np.testing.assert_allclose(result.fpr, [0, 0, 0.25, 1])
    assert result.rbdc == pytest.approx(1.0) and result.tbdc == pytest.approx(1.0)


def test_track_needs_ten_percent_of_its_regions():
    gt = [_gt([(0, f, 0, 0, 9, 9) for f in range(20)])]
    one = [_pred([(0, 0, 0, 9, 9, 0.9)])]  # 1/20 = 5% of the track
    two = [_pred([(0, 0, 0, 9, 9, 0.9), (1, 0, 0, 9, 9, 0.8)])]  # 2/20 = 10%
    assert metrics.tbdc(one, gt, 20) == 0.0
    assert metrics.tbdc(two, gt, 20) == pytest.approx(1.0)
    assert metrics.rbdc(two, gt, 20) == pytest.approx(0.1)


def test_points_beyond_one_false_positive_per_frame_are_dropped():
    gt = [_gt([(0, 0, 0, 0, 9, 9)])]
    # 3 FPs over 2 frames reach FPR 1.5 before the TP, so the TP never enters the curve.
    pred = [_pred([(1, 50, 50, 59, 59, s) for s in (0.9, 0.8, 0.7)] + [(0, 0, 0, 9, 9, 0.1)])]
    result = metrics.rbdc_tbdc(pred, gt, num_frames=2)
    np.testing.assert_allclose(result.fpr, [0, 0.5, 1.0])
    assert result.rbdc == 0.0 and result.tbdc == 0.0


def test_no_predictions_gives_zero():
    gt = [_gt([(0, 0, 0, 0, 9, 9)])]
    assert metrics.rbdc([_pred([])], gt, num_frames=5) == 0.0


def test_regions_from_maps_boxes_and_scores():
    maps = np.zeros((2, 5, 6))
    maps[0, 1:3, 1:4] = 0.6
    maps[0, 2, 2] = 0.9
    maps[0, 4, 5] = 0.7  # single pixel
    maps[1, 0, 0] = maps[1, 1, 1] = 0.8  # diagonal pair: one region with 8-connectivity
    regions = metrics.regions_from_maps(maps, threshold=0.5)
    np.testing.assert_array_equal(regions.frames, [0, 0, 1])
    np.testing.assert_array_equal(regions.boxes, [[1, 1, 3, 2], [5, 4, 5, 4], [0, 0, 1, 1]])
    np.testing.assert_allclose(regions.scores, [0.9, 0.7, 0.8])
    four = metrics.regions_from_maps(maps, threshold=0.5, connectivity=4, min_area=2)
    np.testing.assert_array_equal(four.frames, [0])  # small regions dropped


def test_tracks_from_masks_links_consecutive_frames():
    masks = np.zeros((5, 8, 8), dtype=np.uint8)
    masks[0, 1:4, 1:4] = 1  # A
    masks[1, 1:4, 2:5] = 1  # A moved right: box IoU 6/12 with frame 0
    masks[1, 6:8, 6:8] = 1  # B appears
    masks[2, 1:4, 3:6] = 1  # A again
    masks[4, 1:4, 3:6] = 1  # after an empty frame: a new track
    tracks = metrics.tracks_from_masks(masks)
    np.testing.assert_array_equal(tracks.frames, [0, 1, 1, 2, 4])
    np.testing.assert_array_equal(tracks.track_ids, [0, 0, 1, 0, 2])
    np.testing.assert_array_equal(tracks.boxes[0], [1, 1, 3, 3])
    assert metrics.box_iou(tracks.boxes[0], tracks.boxes[1]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: metrics.rbdc([], [], 10), "no region"),
        (lambda: metrics.rbdc([_pred([])], [], 10), "ground-truth videos"),
        (lambda: metrics.rbdc([_pred([])], [_gt([(0, 0, 0, 0, 1, 1)])], 0), "num_frames"),
        (lambda: ScoredRegions(frames=[0, 1], boxes=[[0, 0, 1, 1]] * 2, scores=[1.0]), "scores"),
        (lambda: ScoredRegions(frames=[0], boxes=[[0, 0, 1]], scores=[1.0]), "boxes"),
        (lambda: TrackRegions(frames=[0], boxes=[[5, 0, 1, 1]], track_ids=[0]), "x_min"),
        (lambda: metrics.tracks_from_masks(np.zeros((4, 4))), r"\[T, H, W\]"),
        (lambda: metrics.regions_from_maps(np.zeros((1, 4, 4)), 0.5, min_area=0), "min_area"),
    ],
)
def test_region_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _sequential_reference(pred, gt, num_frames, beta=0.1, alpha=0.1):
    """The RBDC/TBDC sweep written literally, one prediction at a time, for cross-checking."""
    items = [(s, v, i) for v, r in enumerate(pred) for i, s in enumerate(r.scores)]
    items.sort(key=lambda x: -x[0])  # stable: ties keep (video, row) order
    matched = [np.zeros(r.frames.size, bool) for r in gt]
    n_gt = sum(r.frames.size for r in gt)
    tracks = {(v, t) for v, r in enumerate(gt) for t in r.track_ids}
    fp = tp = 0
    points = [(0.0, 0.0, 0.0)]
    for _, v, i in items:
        box, frame = pred[v].boxes[i], pred[v].frames[i]
        same = np.flatnonzero(gt[v].frames == frame)
        hits = [g for g in same if metrics.box_iou(box, gt[v].boxes[g]) >= beta]
        new = [g for g in hits if not matched[v][g]]
        if not hits:
            fp += 1
        for g in new:
            matched[v][g] = True
        tp += len(new)
        detected = 0
        for tv, t in tracks:
            in_track = gt[tv].track_ids == t
            detected += matched[tv][in_track].sum() / in_track.sum() >= alpha
        points.append((fp / num_frames, tp / n_gt, detected / len(tracks)))
    pts = np.array([p for p in points if p[0] <= 1.0])
    if pts[-1, 0] < 1.0:
        pts = np.vstack([pts, [1.0, pts[-1, 1], pts[-1, 2]]])
    return np.trapezoid(pts[:, 1], pts[:, 0]), np.trapezoid(pts[:, 2], pts[:, 0])


@pytest.mark.parametrize("seed", range(4))
def test_rbdc_tbdc_match_a_literal_sequential_sweep(seed):
    rng = np.random.default_rng(seed)
    pred, gt = [], []
    for _ in range(3):
        rows = []
        for track in range(3):
            start = rng.integers(0, 10)
            x, y = rng.integers(0, 40, 2)
            rows += [(track, f, x + f, y, x + f + 9, y + 9) for f in range(start, start + 6)]
        gt.append(_gt(rows))
        n = 25
        frames = rng.integers(0, 16, n)
        xy = rng.integers(0, 45, (n, 2))
        size = rng.integers(3, 15, (n, 2))
        scores = np.round(rng.random(n), 1)  # ties across videos
        pred.append(_pred(np.column_stack([frames, xy, xy + size, scores])))
    result = metrics.rbdc_tbdc(pred, gt, num_frames=48)
    expected_rbdc, expected_tbdc = _sequential_reference(pred, gt, 48)
    assert result.rbdc == pytest.approx(expected_rbdc)
    assert result.tbdc == pytest.approx(expected_tbdc)
