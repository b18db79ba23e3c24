"""Threshold rules and the threshold-centred normalisation, in NumPy (float64).

Verdict convention used everywhere: a value is anomalous iff it is **strictly greater** than the
threshold (``value > threshold``).

* False-alarm rule: the threshold is the smallest ``t`` with ``fraction(value > t) <= rate`` on
  normal validation values. With ``N`` sorted values ``v[0] <= ... <= v[N-1]`` and
  ``m = floor(rate * N)`` that is ``t = v[N - 1 - m]``: at most ``m`` values lie above it, and
  any smaller ``t`` leaves ``m + 1`` or more above.
* F1 rule: among the partitions ``{value > t}`` of labelled values, the one with the highest F1;
  ``t`` is a value of the set (the largest normal-side value), so validation verdicts reproduce
  the optimal partition exactly.
* Normalisation: piecewise linear, ``t -> 0.5``, the validation minimum ``lo -> 0`` and
  ``t + max(hi - t, t - lo) -> 1`` (``hi`` the validation maximum), clipped to ``[0, 1]``. The
  upper anchor is at least as far above ``t`` as the minimum is below it, so a threshold at the
  validation maximum (few validation values) does not squash every anomaly to 1. Monotone, and
  ``normalized > 0.5`` iff ``value > t`` holds exactly, also after rounding to float32.
"""

from __future__ import annotations

import math

import numpy as np

# Smallest half-range of the normalisation, relative to max(1, |t|): keeps the map defined when
# every validation value equals the threshold.
_MIN_SPAN = 1e-6


def _finite_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: calibration needs at least one validation value.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values; check the model's outputs.")
    return array


def check_rate(rate: float) -> float:
    """Returns ``rate`` as a float; raises ValueError unless ``0 <= rate < 1``."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in [0, 1), got {rate}.")
    return rate


def false_alarm_threshold(values, rate: float) -> float:
    """Smallest ``t`` with ``mean(values > t) <= rate`` (see the module docstring).

    Args:
      values: normal validation values, any shape (flattened).
      rate: target false-alarm rate in ``[0, 1)``.

    Returns:
      The threshold, one of ``values``.
    """
    array = _finite_1d(values, "values")
    rate = check_rate(rate)
    # The small slack keeps floor(0.29 * 100) at 29 despite 0.29 * 100 = 28.999999999999996.
    allowed = min(math.floor(rate * array.size + 1e-9), array.size - 1)
    kth = array.size - 1 - allowed
    return float(np.partition(array, kth)[kth])


def best_f1_threshold(values, labels) -> tuple[float, float]:
    """Threshold whose partition ``{values > t}`` maximises F1 against ``labels``.

    Args:
      values: scores, any shape (flattened).
      labels: same size, truthy = anomalous; at least one anomalous entry.

    Returns:
      ``(threshold, f1)``. Ties in F1 keep the highest threshold (fewest alarms).
    """
    array = _finite_1d(values, "values")
    truth = np.asarray(labels).reshape(-1).astype(bool)
    if truth.shape != array.shape:
        raise ValueError(f"values and labels differ in size: {array.size} vs {truth.size}.")
    positives = int(truth.sum())
    if positives == 0:
        raise ValueError("best_f1_threshold needs at least one anomalous label.")
    order = np.argsort(-array, kind="stable")
    sorted_values, sorted_truth = array[order], truth[order]
    # Cut after the last of each run of equal values: predictions {v >= cut value}.
    last_of_run = np.r_[sorted_values[1:] != sorted_values[:-1], True]
    true_pos = np.cumsum(sorted_truth)[last_of_run]
    flagged = np.flatnonzero(last_of_run) + 1
    f1 = 2.0 * true_pos / (flagged + positives)
    best = int(np.argmax(f1))  # first maximum = highest cut value
    cut_index = flagged[best]  # entries [0, cut_index) are flagged
    if cut_index < array.size:
        threshold = float(sorted_values[cut_index])  # largest unflagged value
    else:  # every value flagged: any threshold below the minimum
        threshold = float(np.nextafter(sorted_values[-1], -np.inf))
    return threshold, float(f1[best])


def normalize(values, threshold: float, low: float, high: float) -> np.ndarray:
    """Monotone map of raw values to ``[0, 1]`` with ``threshold -> 0.5`` (module docstring).

    Args:
      values: raw scores or map values, any shape.
      threshold: the calibrated threshold ``t``.
      low: validation minimum.
      high: validation maximum.

    Returns:
      float32 array of ``values``' shape; ``> 0.5`` exactly where ``values > threshold``.
    """
    raw = np.asarray(values, dtype=np.float64)
    t = float(threshold)
    tiny = _MIN_SPAN * max(1.0, abs(t))
    below = max(t - float(low), tiny)
    above = max(float(high) - t, below)
    scaled = np.where(raw > t, (raw - t) / above, (raw - t) / below)
    out = (0.5 + 0.5 * np.clip(scaled, -1.0, 1.0)).astype(np.float32)
    # Rounding to float32 can pull a value barely above t onto 0.5: keep the verdict exact.
    just_above = np.nextafter(np.float32(0.5), np.float32(1.0))
    out = np.where(raw > t, np.maximum(out, just_above), np.minimum(out, np.float32(0.5)))
    # NaN raw values stay NaN rather than silently becoming 0.5.
    return np.where(np.isnan(raw), np.float32(np.nan), out).astype(np.float32)
