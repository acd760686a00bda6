"""Certified thresholds: δ chosen with a finite-sample guarantee (Learn then Test).

``calibrate(..., confidence=0.95)`` picks δ so that, with probability at least 0.95 over the
calibration sample, the promise holds on new data drawn from the same distribution:

* :class:`~datashunt.training.PrecisionFloor` ``P``: the small route's accuracy is at least P;
* :class:`~datashunt.training.Budget` ``R``: the share of inputs sent to the LLM is at most R;
* :class:`~datashunt.training.MaxAccuracy` with the LLM's accuracy ``A``: the small route is
  at least as accurate as the LLM (a precision floor at A).

Method: Learn then Test (Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test:
Calibrating Predictive Algorithms to Achieve Risk Control", 2021) over the fixed grid
:data:`THRESHOLD_GRID`, with fixed-sequence testing (no multiplicity correction: the tests run
in a fixed order and stop at the first that fails) and exact binomial (Clopper-Pearson) p-values.
For the precision floor, the null "accuracy above δ < P" is tested on the n_δ calibration
inputs above δ (their error count is Binomial(n_δ, error rate) given n_δ); the sequence goes
from the highest δ down, starting at the first δ above which enough inputs lie to be able to
reject at all (a count of inputs, not of errors). For the budget, the LLM share is monotone in
δ, so the sequence goes up from δ = 0.

What it does not promise: anything when new inputs are not exchangeable with the calibration
sample (a drift; see :mod:`datashunt.engine.drift`), nor for one input: it is a statement about
the rate over many.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from ..gates import FloatArray
from .targets import Budget, MaxAccuracy, PrecisionFloor, Target

__all__ = [
    "THRESHOLD_GRID",
    "Certified",
    "Guarantee",
    "certify_threshold",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "examples_needed",
    "precision_pvalue",
    "share_pvalue",
]

#: The fixed grid of thresholds tested (chosen before any data is seen, as LTT requires):
#: steps of 0.01 on [0, 0.99], then 1 - 10^-x up to 1 - 10^-6, then 1.
THRESHOLD_GRID: tuple[float, ...] = tuple(
    sorted(
        {round(float(x), 8) for x in np.linspace(0.0, 0.99, 100)}
        | {round(1.0 - 10.0**-e, 8) for e in np.linspace(2.0, 6.0, 41)}
        | {1.0}
    )
)

Kind = Literal["precision", "budget"]


def _stats() -> Any:
    from scipy import stats  # here, not above: `import datashunt` stays light

    return stats


def _alpha(confidence: float) -> float:
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
    a = _alpha(confidence)
    return 0.0 if k <= 0 or n <= 0 else float(_stats().beta.ppf(a, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a proportion (``k`` successes of ``n``)."""
    a = _alpha(confidence)
    return 1.0 if k >= n or n <= 0 else float(_stats().beta.ppf(1.0 - a, k + 1, n - k))


@dataclass(frozen=True)
class Guarantee:
    """What a certified δ promises, stored in the policy as data (``to_json``).

    Attributes:
        kind: ``"precision"`` (small-route accuracy >= ``level``) or ``"budget"`` (LLM share
            <= ``level``).
        level: the floor P or the budget R.
        confidence: the probability, over the calibration sample, that the promise holds.
        n: calibration examples.
        bound: the certified bound at δ (a lower bound of the accuracy, an upper bound of the
            share), at ``confidence``.
        empirical: the same figure measured on the calibration sample.
        method: how it was certified.
    """

    kind: Kind
    level: float
    confidence: float
    n: int
    bound: float
    empirical: float | None
    method: str = "learn-then-test, fixed sequence, Clopper-Pearson"

    def describe(self) -> str:
        what = (
            f"small-route accuracy >= {self.level:.1%}"
            if self.kind == "precision"
            else f"LLM share <= {self.level:.1%}"
        )
        return f"{what} with probability >= {self.confidence:.0%} (n = {self.n})"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "confidence": self.confidence,
            "n": self.n,
            "bound": self.bound,
            "empirical": self.empirical,
            "method": self.method,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Guarantee:
        kind = data.get("kind")
        if kind not in ("precision", "budget"):
            raise ConfigError(f"guarantee kind must be 'precision' or 'budget', got {kind!r}")
        emp = data.get("empirical")
        return cls(
            kind,
            float(data["level"]),
            float(data["confidence"]),
            int(data["n"]),
            float(data["bound"]),
            None if emp is None else float(emp),
            str(data.get("method", cls.method)),
        )


@dataclass(frozen=True)
class Certified:
    """The outcome of :func:`certify_threshold`.

    Attributes:
        threshold: the certified δ (1.0 when nothing could be certified: all to the LLM).
        guarantee: what it promises.
        llm_rate: the LLM share at δ on the calibration sample.
        note: when the target could not be certified, why.
    """

    threshold: float
    guarantee: Guarantee
    llm_rate: float
    note: str = ""


def _floor_of(target: Target, correct: FloatArray) -> float:
    if isinstance(target, PrecisionFloor):
        return target.min_precision
    assert isinstance(target, MaxAccuracy)  # noqa: S101 - callers dispatch
    if target.llm_accuracy is not None:
        return target.llm_accuracy
    return float(np.nanmean(np.asarray(target.llm_correct, dtype=float)))


def certify_threshold(
    confidence_scores: FloatArray,
    correct: FloatArray,
    target: Target,
    confidence: float,
    grid: tuple[float, ...] = THRESHOLD_GRID,
) -> Certified:
    """The certified δ for ``target`` at ``confidence`` (see the module docstring).

    Args:
        confidence_scores: the gate's calibrated top-label probability per calibration input.
        correct: 1 where the gate's top label is right, else 0.
        target: a budget, a precision floor, or the accuracy target (a floor at the LLM's
            accuracy).
        confidence: 1 - α, e.g. 0.95.
    """
    alpha = _alpha(confidence)
    conf = np.asarray(confidence_scores, dtype=float)
    ok = np.asarray(correct, dtype=float)
    n = conf.size
    if isinstance(target, Budget):
        return _certify_budget(conf, target.max_llm_rate, alpha, confidence, grid)
    floor = _floor_of(target, ok)
    # fewest inputs above δ with which zero errors could reject "accuracy < floor" at alpha
    n_min = math.ceil(math.log(alpha) / math.log(floor)) if floor < 1.0 else n + 1
    chosen, note = 1.0, ""
    started = False
    for d in sorted(grid, reverse=True):
        above = conf >= d
        m = int(above.sum())
        if not started:
            if m < n_min:
                continue
            started = True
        errors = int(m - ok[above].sum())
        if precision_pvalue(errors, m, floor) > alpha:
            break
        chosen = d
    above = conf >= chosen
    m = int(above.sum())
    k = int(ok[above].sum())
    if chosen == 1.0 and not (m and precision_pvalue(m - k, m, floor) <= alpha):
        note = (
            f"small-route accuracy >= {floor:.1%} cannot be certified at {confidence:.0%} on "
            f"{n} examples: δ = 1 sends every input to the LLM"
        )
    g = Guarantee(
        "precision",
        floor,
        confidence,
        n,
        clopper_pearson_lower(k, m, confidence),
        k / m if m else None,
    )
    return Certified(chosen, g, float((~above).mean()) if n else 1.0, note)


def _certify_budget(
    conf: FloatArray, rate: float, alpha: float, confidence: float, grid: tuple[float, ...]
) -> Certified:
    n = conf.size
    chosen = 0.0
    for d in sorted(grid):  # the LLM share grows with δ: test upward, stop at the first failure
        k = int((conf < d).sum())
        if share_pvalue(k, n, rate) > alpha:
            break
        chosen = d
    k = int((conf < chosen).sum())
    g = Guarantee("budget", rate, confidence, n, clopper_pearson_upper(k, n, confidence), k / n)
    return Certified(chosen, g, k / n if n else 0.0)


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
    alpha = _alpha(confidence)

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
