"""Paired comparisons of two methods over matched runs: bootstrap interval and sign test.

A run of method A and a run of method B are matched when they share everything but the
method (e.g. the same category and seed); the statistics below take the per-pair differences
``B - A``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    differences: np.ndarray,
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference.

    The pairs are resampled with replacement ``resamples`` times (NumPy ``default_rng(seed)``,
    so the interval is reproducible); the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled means (linear interpolation).

    Args:
      differences: ``[N]`` per-pair differences, ``N >= 1``.
      level: coverage, e.g. 0.95.
      resamples: number of bootstrap resamples.
      seed: seed of the resampling.

    Returns:
      ``(low, high)``.
    """
    d = _as_differences(differences)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def sign_test(differences: np.ndarray) -> float:
    """Two-sided exact sign test of a zero median difference; ties (zeros) are dropped.

    With ``n`` non-zero differences of which ``k`` are positive, the p-value is
    ``min(1, 2 * P[X <= min(k, n - k)])`` for ``X ~ Binomial(n, 1/2)``.

    Args:
      differences: ``[N]`` per-pair differences.

    Returns:
      The p-value; 1.0 when every difference is zero.
    """
    d = _as_differences(differences)
    nonzero = d[d != 0]
    n, k = len(nonzero), int(np.sum(nonzero > 0))
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


class PairedComparison(NamedTuple):
    """Summary of per-pair differences ``B - A``.

    Attributes:
      pairs: number of matched pairs.
      mean: mean difference.
      low: lower end of the bootstrap interval.
      high: upper end of the bootstrap interval.
      wins: pairs where B is higher.
      losses: pairs where B is lower.
      sign_p: two-sided sign-test p-value.
    """

    pairs: int
    mean: float
    low: float
    high: float
    wins: int
    losses: int
    sign_p: float


def compare_paired(differences: np.ndarray, **bootstrap_kwargs) -> PairedComparison:
    """:func:`bootstrap_interval` and :func:`sign_test` of the same differences."""
    d = _as_differences(differences)
    low, high = bootstrap_interval(d, **bootstrap_kwargs)
    return PairedComparison(
        pairs=len(d),
        mean=float(d.mean()),
        low=low,
        high=high,
        wins=int(np.sum(d > 0)),
        losses=int(np.sum(d < 0)),
        sign_p=sign_test(d),
    )


def _as_differences(differences: np.ndarray) -> np.ndarray:
    d = np.asarray(differences, np.float64).ravel()
    if d.size == 0:
        raise ValueError("paired statistics need at least one pair of finished runs.")
    if not np.all(np.isfinite(d)):
        raise ValueError("paired differences must be finite (a run without that metric?).")
    return d
