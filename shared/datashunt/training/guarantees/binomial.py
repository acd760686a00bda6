"""Exact binomial tools for certified thresholds: p-values, Clopper-Pearson bounds, and how
many calibration examples a guarantee needs (scipy's binomial and beta distributions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConfigError

__all__ = [
    "STARTS",
    "alpha_of",
    "budget_examples_needed",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "examples_needed",
    "precision_pvalue",
    "share_pvalue",
]

#: The precision sequences' starts, as multiples of the fewest inputs that could reject.
STARTS = (1, 2, 4, 8)


def _stats() -> Any:
    from scipy import stats  # here, not above: `import datashunt` stays light

    return stats


def alpha_of(confidence: float) -> float:
    """α = 1 - confidence, checked to be in (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence}")
    return 1.0 - confidence


def precision_pvalue(errors: int, n: int, floor: float) -> float:
    """p-value of the null "accuracy < ``floor``" after ``errors`` wrong answers in ``n``:
    ``P(Binomial(n, 1 - floor) <= errors)`` (1 when ``n`` is 0)."""
    if n <= 0:
        return 1.0
    return float(_stats().binom.cdf(errors, n, 1.0 - floor))


def share_pvalue(k: int, n: int, rate: float) -> float:
    """p-value of the null "share > ``rate``" after ``k`` of ``n``: ``P(Bin(n, rate) <= k)``."""
    return float(_stats().binom.cdf(k, n, rate)) if n > 0 else 1.0


def clopper_pearson_lower(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of a proportion (``k`` successes of ``n``)."""
    a = alpha_of(confidence)
    return 0.0 if k <= 0 or n <= 0 else float(_stats().beta.ppf(a, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a proportion (``k`` successes of ``n``)."""
    a = alpha_of(confidence)
    return 1.0 if k >= n or n <= 0 else float(_stats().beta.ppf(1.0 - a, k + 1, n - k))


def examples_needed(
    share_small: float, accuracy: float, floor: float, confidence: float, limit: int = 10**7
) -> int | None:
    """Calibration examples needed to certify ``floor`` at ``confidence`` for a δ that sends
    ``share_small`` of inputs to the small route, answered with ``accuracy`` (the rates seen).

    Returns:
        the smallest such n (by bisection, the counts rounded), or ``None`` when the accuracy
        is not above the floor (no sample size can certify it).
    """
    if accuracy <= floor or share_small <= 0.0:
        return None
    alpha = alpha_of(confidence) / len(STARTS)  # each sequence's level

    def passes(n: int) -> bool:
        m = max(1, round(share_small * n))
        return precision_pvalue(round((1.0 - accuracy) * m), m, floor) <= alpha

    lo, hi = 1, 2
    while not passes(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def budget_examples_needed(
    share: float, rate: float, confidence: float, limit: int = 10**7
) -> int | None:
    """Calibration examples needed to certify "LLM share <= ``rate``" at ``confidence`` for a δ
    that sends ``share`` of inputs to the LLM (the share seen): the smallest n with
    ``P(Binomial(n, rate) <= round(share * n)) <= 1 - confidence``, the test the budget's
    fixed sequence runs.

    Returns:
        that n, or ``None`` when ``share >= rate`` (no sample size can certify it) or it
        exceeds ``limit``.
    """
    if share >= rate or share < 0.0:
        return None
    alpha = alpha_of(confidence)
    binom = _stats().binom
    hi = 1
    while binom.cdf(round(share * hi), hi, rate) > alpha:  # doubling: a passing n
        hi *= 2
        if hi > limit:
            return None
    # rounding makes the test not monotone in n: the smallest passing n, scanned exactly
    for lo in range(1, hi + 1, 100_000):
        n = np.arange(lo, min(hi, lo + 99_999) + 1)
        passing = np.flatnonzero(binom.cdf(np.round(share * n), n, rate) <= alpha)
        if passing.size:
            return int(n[passing[0]])
    return hi  # not reached: hi passes
