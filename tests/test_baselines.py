"""The local-statistics baseline against an explicit per-pixel NumPy loop."""

import numpy as np
import pytest

from sspcab_jax.baselines import fit_local_statistics, local_features, local_statistics_scores


def _loop_features(images, window):
    """Local mean / std per pixel and channel by looping over windows of a symmetric pad."""
    half = window // 2
    n, h, w, c = images.shape
    # np.pad's 'symmetric' repeats the edge pixel: scipy.ndimage's 'reflect'.
    padded = np.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode="symmetric")
    out = np.zeros((n, h, w, 2 * c))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for ch in range(c):
                    patch = padded[i, y : y + window, x : x + window, ch]
                    out[i, y, x, ch] = patch.mean()
                    out[i, y, x, c + ch] = patch.std()
    return out


def test_features_match_a_numpy_loop():
    images = np.random.default_rng(0).random((2, 6, 5, 3))
    np.testing.assert_allclose(local_features(images, 3), _loop_features(images, 3), atol=1e-7)
    np.testing.assert_allclose(local_features(images, 5), _loop_features(images, 5), atol=1e-7)


def test_scores_match_a_numpy_loop():
    rng = np.random.default_rng(1)
    train, test = rng.random((4, 5, 6, 2)), rng.random((3, 5, 6, 2))
    stats = fit_local_statistics(train, window=3)
    maps, scores = local_statistics_scores(stats, test)

    train_f, test_f = _loop_features(train, 3), _loop_features(test, 3)
    expected = np.zeros(maps.shape)
    for i in range(len(test)):
        for y in range(5):
            for x in range(6):
                z = [
                    abs(test_f[i, y, x, f] - train_f[:, y, x, f].mean())
                    / max(train_f[:, y, x, f].std(), 1e-3)
                    for f in range(4)
                ]
                expected[i, y, x] = max(z)
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    np.testing.assert_allclose(scores, expected.max(axis=(1, 2)), rtol=1e-6)


def test_a_bright_square_is_the_highest_scoring_region():
    rng = np.random.default_rng(2)
    train = rng.normal(0.5, 0.05, (20, 32, 32, 1))
    test = rng.normal(0.5, 0.05, (1, 32, 32, 1))
    test[0, 10:16, 20:26] = 0.9
    maps, _ = local_statistics_scores(fit_local_statistics(train), test)
    y, x = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert 7 <= y <= 18 and 17 <= x <= 28


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(ValueError, match="odd"):
        local_features(np.zeros((1, 4, 4, 1)), 4)
    with pytest.raises(ValueError, match="resize"):
        stats = fit_local_statistics(np.zeros((2, 4, 4, 1)))
        local_statistics_scores(stats, np.zeros((1, 5, 4, 1)))
