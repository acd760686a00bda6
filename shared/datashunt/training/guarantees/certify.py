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
from the highest δ down. Where it starts matters: the highest thresholds hold few inputs, and
one error there would stop the sequence. So :data:`STARTS` sequences run, Bonferroni-corrected
(each at α / 4: the "multiple starts" of LTT), starting where 1, 2, 4 and 8 times the fewest
inputs that could reject at all lie above δ (a count of inputs, not of errors); the lowest δ
any of them certifies is chosen. For the budget, the LLM share is monotone in δ, so one
sequence goes up from δ = 0.

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

from ...errors import ConfigError
from ...gates import FloatArray
from .binomial import (
    STARTS,
    alpha_of,
    budget_examples_needed,
    clopper_pearson_lower,
    clopper_pearson_upper,
    examples_needed,
    precision_pvalue,
    share_pvalue,
)
from .targets import Budget, MaxAccuracy, PrecisionFloor, Target

__all__ = [
    "STARTS",
    "THRESHOLD_GRID",
    "Certified",
    "budget_examples_needed",
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
        note: when the target could not be certified, why; for a budget, how many calibration
            examples a tighter guarantee needs.
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
    alpha = alpha_of(confidence)
    conf = np.asarray(confidence_scores, dtype=float)
    ok = np.asarray(correct, dtype=float)
    n = conf.size
    if isinstance(target, Budget):
        return _certify_budget(conf, target.max_llm_rate, alpha, confidence, grid)
    floor = _floor_of(target, ok)
    level = alpha / len(STARTS)
    # fewest inputs above δ with which zero errors could reject "accuracy < floor" at level
    n_min = math.ceil(math.log(level) / math.log(floor)) if floor < 1.0 else n + 1
    chosen, note = 1.0, ""
    for start in STARTS:
        d = _sequence(conf, ok, floor, level, n_min * start, grid)
        chosen = min(chosen, d)
    above = conf >= chosen
    m = int(above.sum())
    k = int(ok[above].sum())
    if chosen == 1.0 and not (m and precision_pvalue(m - k, m, floor) <= level):
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
        f"learn-then-test, fixed sequence from {len(STARTS)} starts (Bonferroni), Clopper-Pearson",
    )
    return Certified(chosen, g, float((~above).mean()) if n else 1.0, note)


def _sequence(
    conf: FloatArray,
    ok: FloatArray,
    floor: float,
    level: float,
    first: int,
    grid: tuple[float, ...],
) -> float:
    """One fixed sequence from the highest δ with ``first`` inputs above it, going down."""
    chosen = 1.0
    for d in sorted(grid, reverse=True):
        above = conf >= d
        m = int(above.sum())
        if m < first:
            continue
        if precision_pvalue(int(m - ok[above].sum()), m, floor) > level:
            break
        chosen = d
    return chosen


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
    return Certified(chosen, g, k / n if n else 0.0, _budget_note(k / n, rate, confidence, n))


def _budget_note(share: float, rate: float, confidence: float, n: int) -> str:
    """How many examples would certify a δ that halves what the guarantee costs now (the
    points between the budget and the certified δ's LLM share), at ``confidence`` and 99%."""
    if n <= 0 or share >= rate:
        return ""
    tighter = rate - (rate - share) / 2.0
    need = budget_examples_needed(tighter, rate, confidence)
    need99 = budget_examples_needed(tighter, rate, 0.99)
    return (
        f"calibration examples for a tighter guarantee (certify an LLM share of {tighter:.1%}, "
        f"half the {rate - share:.1%} the guarantee costs now): {need or 'over 10^7'} at "
        f"{confidence:.0%}, {need99 or 'over 10^7'} at 99% (now {n})"
    )
