"""Champion and challenger on the same evidence, and the rule that decides between them.

Both gates are calibrated on the same labelled calibration data for the same target (certified
at the same confidence when one is given), so their LLM shares are compared *at the same
guarantee*. Then each evaluation slice (gold data the user gives, the store's audits with the
LLM's answer as reference) is scored with both. The challenger is promoted only when its LLM
share is lower and no slice loses more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..data import Dataset
from ..gates import FloatArray, softmax
from ..policy import ShuntPolicy
from ..training.guarantees.calibration import LogitsGate, calibrate
from ..training.guarantees.targets import Target

__all__ = [
    "EvidenceSlice",
    "GateEvidence",
    "SliceResult",
    "Verdict",
    "evaluate_gate",
    "judge",
    "score_at_threshold",
]

#: a slice with fewer inputs than this is reported but does not decide (too noisy)
MIN_SLICE = 30

Logits = Callable[[Sequence[str]], FloatArray]


@dataclass(frozen=True)
class EvidenceSlice:
    """Inputs with reference labels: ``"gold"`` (the user's) or ``"llm"`` (audited answers)."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    reference: str = "gold"

    @classmethod
    def of(cls, name: str, data: Dataset) -> EvidenceSlice:
        """A gold slice from labelled data."""
        return cls(name, tuple(data.texts), tuple(e.label for e in data.examples), "gold")


@dataclass(frozen=True)
class SliceResult:
    """One gate on one slice: accuracy of its label, its LLM share and small-route precision
    at its calibrated δ."""

    name: str
    n: int
    accuracy: float
    llm_rate: float
    small_precision: float | None
    reference: str


@dataclass(frozen=True)
class GateEvidence:
    """One gate, calibrated on the calibration data and scored on every slice.

    Attributes:
        llm_rate: the LLM share on the calibration data at the (certified) δ.
        bound: the guarantee's lower bound on small-route accuracy, when certified.
        certified: the target could be certified (δ < 1); always true without a confidence.
    """

    name: str
    threshold: float
    temperature: float
    llm_rate: float
    small_precision: float | None
    bound: float | None
    certified: bool
    note: str
    slices: tuple[SliceResult, ...]

    def slice(self, name: str) -> SliceResult:
        """The result on the slice called ``name``."""
        return next(s for s in self.slices if s.name == name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def score_at_threshold(
    probs: FloatArray, gold: np.ndarray, threshold: float
) -> tuple[float, float, float | None]:
    """(accuracy of the gate's label, LLM share, small-route accuracy or ``None`` when no input
    stays small) of routing at δ = ``threshold``; ``gold`` holds label indices."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    right = pred == gold
    small = conf >= threshold
    precision = float(right[small].mean()) if small.any() else None
    return float(right.mean()), float((~small).mean()), precision


def evaluate_gate(
    name: str,
    labels: Sequence[str],
    logits_of: Logits,
    calib: Dataset,
    slices: Sequence[EvidenceSlice],
    target: Target,
    confidence: float | None,
) -> tuple[GateEvidence, ShuntPolicy]:
    """Calibrate one gate (given as a function from texts to raw logits) on ``calib`` for
    ``target`` and score it on ``slices``; returns the evidence and the calibrated policy."""
    table = dict(zip(calib.texts, logits_of(calib.texts), strict=True))
    report = calibrate(LogitsGate(labels, table), calib, target, confidence=confidence)
    policy = report.policy
    t, delta = policy.temperature, policy.threshold
    index = {lab: i for i, lab in enumerate(labels)}
    results = []
    for sl in slices:
        if not sl.texts:
            continue
        probs = softmax(logits_of(sl.texts), t)
        gold = np.array([index[lab] for lab in sl.labels])
        acc, rate, prec = score_at_threshold(probs, gold, delta)
        results.append(SliceResult(sl.name, len(sl.texts), acc, rate, prec, sl.reference))
    y = np.array([index[e.label] for e in calib.examples])
    _, rate, prec = score_at_threshold(softmax(np.stack(list(table.values())), t), y, delta)
    certified = report.certified
    evidence = GateEvidence(
        name=name,
        threshold=delta,
        temperature=t,
        llm_rate=rate,
        small_precision=prec,
        bound=certified.guarantee.bound if certified is not None else None,
        certified=certified is None or certified.threshold < 1.0,
        note=report.note,
        slices=tuple(results),
    )
    return evidence, policy


@dataclass(frozen=True)
class Verdict:
    """Promote or keep, and every finding that led there (``refused`` lists the failed ones)."""

    promote: bool
    findings: tuple[str, ...]
    refused: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def judge(
    champion: GateEvidence,
    challenger: GateEvidence,
    *,
    tolerance: float = 0.005,
    min_gain: float = 0.0,
) -> Verdict:
    """Promote only when the challenger's LLM share at the same guarantee is lower (by at
    least ``min_gain``, relative) and no slice's accuracy falls by more than ``tolerance``
    (a fraction: 0.005 is half a point). Slices under :data:`MIN_SLICE` inputs are reported,
    not counted."""
    findings: list[str] = []
    refused: list[str] = []
    if champion.certified and not challenger.certified:
        refused.append(f"the challenger cannot certify the target: {challenger.note}")
    a, b = champion.llm_rate, challenger.llm_rate
    rel = (b - a) / a if a > 0 else 0.0
    line = f"LLM share at the same guarantee {a:.1%} -> {b:.1%} ({rel:+.1%} relative)"
    if b < a * (1.0 - min_gain) - 1e-12:
        findings.append(line)
    else:
        need = f" (needs {min_gain:.0%} lower)" if min_gain else ""
        refused.append(f"{line}: not lower{need}")
    for old in champion.slices:
        try:
            new = challenger.slice(old.name)
        except StopIteration:
            continue
        diff = new.accuracy - old.accuracy
        line = (
            f"{old.name} ({old.n}, vs {old.reference}): accuracy {old.accuracy:.1%} -> "
            f"{new.accuracy:.1%} ({100 * diff:+.1f} points)"
        )
        if old.n < MIN_SLICE:
            findings.append(f"{line}; too few to decide")
        elif diff < -tolerance - 1e-12:
            refused.append(f"{line}: loses more than {100 * tolerance:.1f} points")
        else:
            findings.append(line)
    return Verdict(not refused, tuple(findings), tuple(refused))


def slices_from(named: Mapping[str, Dataset]) -> list[EvidenceSlice]:
    """Gold slices from named labelled data."""
    return [EvidenceSlice.of(name, data) for name, data in named.items()]
