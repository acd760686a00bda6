"""Certified fidelity: the small route agrees with the LLM at least a stated share of the time.

Without gold labels, the promise a user can check is *fidelity*: on the inputs the student
answers alone, it gives the LLM's answer at least ``target`` of the time, with probability at
least ``confidence`` over the held-out answers. It is the precision floor of
:mod:`datashunt.training.guarantees.certify` (Learn then Test, fixed-sequence Clopper-Pearson tests
over the
fixed δ grid) with the LLM's parsed answers in place of gold labels, run unchanged by
:func:`~datashunt.training.guarantees.certify.certify_threshold`. The held-out answers must be a
uniform
random part of the traffic (the shadow phase's answers, or audits drawn regardless of the
score) and never training answers; unreadable answers are left out (nothing to agree with).

Several deferral scores may be offered; each is certified at ``1 - (1 - confidence) / m`` for
``m`` scores (Bonferroni), so that the one kept, the largest certified small-route share, still
holds at ``confidence``.

What it does not promise: accuracy. In the worst case the small route's accuracy is
``fidelity + LLM accuracy - 1``; and nothing holds when new inputs are not exchangeable with the
held-out ones (drift).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..engine.drift import spent_level
from ..engine.shadow import Exploration
from ..errors import ConfigError
from ..training.guarantees.binomial import examples_needed
from ..training.guarantees.certify import THRESHOLD_GRID, Guarantee, certify_threshold
from ..training.guarantees.targets import PrecisionFloor
from .student import FloatArray

__all__ = [
    "Exploration",
    "FidelityCertificate",
    "answers_to_collect",
    "certify_fidelity",
    "holdout_mask",
]

#: Appended to the guarantee's method: its "precision" is agreement with the LLM's answers.
FIDELITY_NOTE = "; fidelity: the labels were the LLM's parsed answers (agreement, not accuracy)"

#: When the rates seen would already certify but the fixed sequence stopped above that δ, the
#: next try waits for this share more held-out answers.
REGROW = 0.25

#: Fewest held-out inputs above δ for which :func:`certify_fidelity` estimates the answers
#: still needed (above a handful of inputs, the empirical agreement is mostly luck).
MIN_ABOVE = 30


@dataclass(frozen=True)
class FidelityCertificate:
    """The outcome of :func:`certify_fidelity`.

    Attributes:
        score: the deferral score chosen (``max``, ``margin``, ``agree``, ...).
        threshold: δ on that score; 1.0 when nothing certified (every input to the LLM).
        certified: whether some δ below 1 certified the target.
        target: the fidelity floor (agreement with the LLM on the small route).
        confidence: the overall confidence (after the Bonferroni split over scores).
        n_holdout: held-out answers used.
        small_share: share of the held-out inputs the student keeps at δ.
        agreement: their empirical agreement with the LLM (``None`` when none is kept).
        bound: the Clopper-Pearson lower bound of that agreement.
        holdout_needed: when nothing certified, the held-out answers that would certify the
            most promising δ seen (``None``: no δ agrees with the LLM above the target).
        guarantee: the :class:`~datashunt.training.guarantees.certify.Guarantee` to store in the
        policy.
    """

    score: str
    threshold: float
    certified: bool
    target: float
    confidence: float
    n_holdout: int
    small_share: float
    agreement: float | None
    bound: float
    holdout_needed: int | None
    guarantee: Guarantee

    def describe(self) -> str:
        if self.certified:
            return (
                f"fidelity >= {self.target:.1%} with confidence {self.confidence:.0%}: δ = "
                f"{self.threshold:.4g} on {self.score}, the student keeps "
                f"{self.small_share:.1%} of inputs (agreement {self.agreement:.1%} on "
                f"{self.n_holdout} held-out answers, lower bound {self.bound:.1%})"
            )
        head = (
            f"fidelity >= {self.target:.1%} cannot be certified at {self.confidence:.0%} on "
            f"{self.n_holdout} held-out answers"
        )
        if self.holdout_needed is None:
            return head + "; at the agreement seen, no number of held-out answers would"
        if self.holdout_needed <= self.n_holdout:
            return head + (
                f"; the rates seen would certify a δ at {self.holdout_needed}, but the test "
                "sequence stopped on errors above it: more answers will tell"
            )
        return head + f"; about {self.holdout_needed} held-out answers would certify it"


def _check(target: float, confidence: float) -> None:
    if not 0.0 < target < 1.0:
        raise ConfigError(f"the fidelity target must be in (0, 1), e.g. 0.95, got {target}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence}")


def _needed(score: FloatArray, agree: FloatArray, target: float, confidence: float) -> int | None:
    """The fewest held-out answers that would certify some grid δ, at the rates seen there."""
    best: int | None = None
    seen = -1
    for d in THRESHOLD_GRID:
        above = score >= d
        m = int(above.sum())
        if m < MIN_ABOVE or m == seen:  # the same inputs as the last δ: the same answer
            continue
        seen = m
        n = examples_needed(m / len(score), float(agree[above].mean()), target, confidence)
        if n is not None and (best is None or n < best):
            best = n
    return best


def certify_fidelity(
    scores: Mapping[str, Any],
    agree: Any,
    *,
    target: float,
    confidence: float,
    estimate_needed: bool = True,
) -> FidelityCertificate:
    """Certify δ for "agreement with the LLM >= ``target``" on held-out answers.

    Args:
        scores: deferral score per held-out input (higher = keep), by score name.
        agree: 1 where the student's label is the LLM's (readable) answer.
        target: the fidelity floor, e.g. 0.95.
        confidence: e.g. 0.95 (split over the scores, Bonferroni).
        estimate_needed: when nothing certifies, estimate the held-out answers that would
            (``holdout_needed``; a scan of the grid, the slow part).

    Raises:
        ConfigError: a target or confidence outside (0, 1), no score, or lengths that differ.
    """
    _check(target, confidence)
    ok = np.asarray(agree, dtype=np.float64)
    if not scores:
        raise ConfigError("give at least one deferral score, e.g. {'max': probs.max(axis=1)}")
    each = 1.0 - (1.0 - confidence) / len(scores)
    results = []
    for name, s in scores.items():
        sc = np.asarray(s, dtype=np.float64)
        if sc.shape != ok.shape:
            raise ConfigError(f"score {name!r} has {sc.shape} values for {ok.shape} answers")
        results.append((name, sc, certify_threshold(sc, ok, PrecisionFloor(target), each)))
    # the largest certified small-route share; ties and failures fall to the first score
    name, sc, best = max(results, key=lambda r: (r[2].threshold < 1.0, 1.0 - r[2].llm_rate))
    certified = best.threshold < 1.0
    above = sc >= best.threshold
    needed = None
    if not certified and len(ok) and estimate_needed:
        options = [_needed(s, ok, target, each) for _, s, _ in results]
        found = [n for n in options if n is not None]
        needed = min(found) if found else None
    # the level is an agreement with the LLM, not an accuracy: say so where the policy keeps it
    g = replace(best.guarantee, method=best.guarantee.method + FIDELITY_NOTE)
    return FidelityCertificate(
        score=name,
        threshold=best.threshold,
        certified=certified,
        target=target,
        confidence=confidence,
        n_holdout=int(len(ok)),
        small_share=float(above.mean()) if len(ok) else 0.0,
        agreement=float(ok[above].mean()) if above.any() else None,
        bound=g.bound,
        holdout_needed=needed,
        guarantee=g,
    )


def answers_to_collect(
    cert: FidelityCertificate, *, holdout_share: float, readable_share: float = 1.0
) -> int | None:
    """How many more LLM answers to record before the next try: the held-out answers still
    missing, scaled up by the share of answers held out and the share that is readable."""
    if cert.certified:
        return 0
    if cert.holdout_needed is None:
        return None
    if not (0.0 < holdout_share <= 1.0 and 0.0 < readable_share <= 1.0):
        raise ConfigError("holdout_share and readable_share must be in (0, 1]")
    missing = cert.holdout_needed - cert.n_holdout
    if missing <= 0:  # the rates would do, but the fixed sequence stopped above that δ
        missing = math.ceil(REGROW * cert.n_holdout)
    return math.ceil(missing / holdout_share / readable_share)


def holdout_mask(n: int, share: float, seed: int = 0) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A random ``share`` of ``n`` answers to hold out for certification (exactly
    ``round(share * n)`` of them, at least one when ``n > 1`` and at most ``n - 1``)."""
    if not 0.0 < share < 1.0:
        raise ConfigError(f"the held-out share must be in (0, 1), e.g. 0.3, got {share}")
    k = min(max(round(share * n), 1 if n > 1 else 0), max(n - 1, 0))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return mask


def spent_confidence(confidence: float, attempt: int) -> float:
    """The confidence of the ``attempt``-th certificate (from 1) drawn on one reused held-out
    set, so that all of a run's certificates hold together at ``confidence``: the miss rate
    ``1 - confidence`` is spent as the drift alarm spends its budget
    (:func:`~datashunt.engine.drift.spent_level`: ``6 / (pi^2 k^2)`` of it on attempt ``k``).

    Example:
        >>> round(spent_confidence(0.95, 1), 4), round(spent_confidence(0.95, 3), 4)
        (0.9696, 0.9966)
    """
    if attempt < 1 or not 0.0 < confidence < 1.0:
        raise ConfigError(
            f"need attempt >= 1 and confidence in (0, 1), got {attempt} and {confidence}"
        )
    return 1.0 - spent_level(1.0 - confidence, attempt)
