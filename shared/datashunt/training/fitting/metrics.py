"""How good a gate's probabilities are: NLL, ECE, the fitted temperature, per-class recall, and
the uncertainty of a rate measured on a sample (Wilson score interval)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ...gates import FloatArray, softmax

__all__ = [
    "ArrayLike",
    "class_recall",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "wilson_interval",
]

#: Label indices or 0/1 correctness: a sequence or a NumPy array.
ArrayLike = Sequence[int] | Sequence[float] | npt.NDArray[Any]


def negative_log_likelihood(probs: FloatArray, y: ArrayLike) -> float:
    """Mean negative log-likelihood of the gold labels."""
    p = np.clip(probs[np.arange(len(y)), np.asarray(y)], 1e-12, 1.0)
    return float(-np.log(p).mean())


def expected_calibration_error(probs: FloatArray, y: ArrayLike, n_bins: int = 15) -> float:
    """ECE of the top-label confidence over ``n_bins`` equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def fit_temperature(logits: FloatArray, y: ArrayLike) -> float:
    """The temperature that minimises dev NLL (golden-section search on log T in [-3, 3])."""
    yy = np.asarray(y)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(softmax(logits, math.exp(log_t)), yy)

    lo, hi = -3.0, 3.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


def class_recall(probs: FloatArray, y: ArrayLike, labels: Sequence[str]) -> dict[str, float]:
    """Per-class recall of the gate's argmax; classes absent from ``y`` are left out."""
    yy, pred = np.asarray(y), probs.argmax(axis=1)
    return {
        lab: float((pred[yy == i] == i).mean()) for i, lab in enumerate(labels) if (yy == i).any()
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for ``z = 1.96``).

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0/n and n/n,
    which is where a precision floor of 97% on a small sample sits (Brown, Cai and DasGupta,
    "Interval Estimation for a Binomial Proportion", Statistical Science 2001).

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when ``n`` is 0.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
