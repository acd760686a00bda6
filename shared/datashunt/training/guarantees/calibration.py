"""Calibration: fit the gate's temperature, measure it, and choose the shunt threshold δ.

δ is chosen on labelled data for a :mod:`target <datashunt.training.guarantees.targets>`; the LLM's
accuracy that :class:`~datashunt.training.MaxAccuracy` needs can be measured with
:mod:`datashunt.training.guarantees.llm_accuracy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...data import Dataset
from ...engine.watch import REFERENCE_KEY, reference_confidences
from ...errors import DataError, GateError
from ...gates import BaseGate, FloatArray, Gate, softmax
from ...policy import ShuntPolicy
from ..fitting.metrics import (
    class_recall,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    wilson_interval,
)
from .certify import Certified, certify_threshold, examples_needed
from .conformal import fit_conformal
from .targets import Budget, PrecisionFloor, Target, describe_target
from .thresholds import CoverageRow, choose_threshold, coverage_table, format_table

__all__ = [
    "MIN_CALIBRATION_ROWS",
    "RECOMMENDED_CALIBRATION_ROWS",
    "CalibrationReport",
    "LogitsGate",
    "calibrate",
    "check_calibration_rows",
    "few_rows_warning",
]

#: Fewer rows are refused: each row would move the LLM-call rate by more than 10 points, so a
#: budget cannot even be expressed, and the temperature fit runs to the edge of its range.
MIN_CALIBRATION_ROWS = 10
#: Fewer rows are warned about (a precision target P asks for 3 / (1 - P) rows instead: below
#: that, even a small route that is right every time cannot show P at 95% confidence, the
#: "rule of three"; 100 rows for 97%).
RECOMMENDED_CALIBRATION_ROWS = 100


def _interval(x: tuple[float, float] | None) -> str:
    return "" if x is None else f" (95% interval {x[0]:.3f}-{x[1]:.3f})"


@dataclass(frozen=True)
class CalibrationReport:
    """The outcome of :func:`calibrate`: the policy and the figures it was chosen from.

    Attributes:
        small_accuracy_interval / llm_rate_interval: 95% Wilson intervals of the chosen δ's
            small-route accuracy and LLM-call rate on this sample: how much to trust them.
        warnings: what makes the figures less trustworthy (too few rows).
    """

    policy: ShuntPolicy
    table: list[CoverageRow]
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    dev_accuracy: float
    note: str = ""
    small_accuracy_interval: tuple[float, float] | None = None
    llm_rate_interval: tuple[float, float] | None = None
    warnings: tuple[str, ...] = ()
    certified: Certified | None = None
    uncertified_threshold: float | None = None
    uncertified_llm_rate: float | None = None

    def format(self, *, warnings: bool = True) -> str:
        """A printable summary: calibration figures, then the coverage table.

        Args:
            warnings: include :attr:`warnings` (the CLI prints them to stderr instead).
        """
        p, m = self.policy, self.policy.metrics
        small = m.get("small_accuracy")
        head = [
            f"temperature T = {p.temperature:.3f}   (fitted on {m.get('n', '?')} examples)",
            f"NLL  before (T=1) {self.nll_before:.4f}   after {self.nll_after:.4f}",
            f"ECE  before (T=1) {self.ece_before:.4f}   after {self.ece_after:.4f}",
            f"gate accuracy {self.dev_accuracy:.4f}",
            f"target: {describe_target(p.target)}  ->  δ = {p.threshold:.4f}",
            f"at δ: LLM-call rate {m.get('llm_rate', 0.0):.3f}{_interval(self.llm_rate_interval)}"
            + (
                f", small-route accuracy {small:.3f}{_interval(self.small_accuracy_interval)}"
                if small is not None
                else ", no input answered by the gate alone"
            ),
        ]
        head.extend(self._guarantee_lines())
        if self.note:
            head.append(f"note: {self.note}")
        if warnings:
            head.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(head) + "\n\n" + format_table(self.table, chosen=p.threshold)

    def _guarantee_lines(self) -> list[str]:
        c = self.certified
        if c is None:
            return []
        g = c.guarantee
        emp = "-" if g.empirical is None else f"{g.empirical:.3f}"
        side = "lower" if g.kind == "precision" else "upper"
        lines = [
            f"certified: {g.describe()} ({g.method})",
            f"  {side} bound {g.bound:.3f} at {g.confidence:.0%} next to the empirical {emp}; "
            f"uncertified δ = {self.uncertified_threshold or 0.0:.4f} would send "
            f"{self.uncertified_llm_rate or 0.0:.1%} to the LLM, the certified "
            f"{c.llm_rate:.1%}",
        ]
        if g.kind == "precision" and self.uncertified_threshold is not None:
            rows = self.table
            plain = next((r for r in rows if r.threshold == self.uncertified_threshold), None)
            if plain is not None and plain.small_accuracy is not None:
                need = examples_needed(
                    1.0 - plain.llm_rate, plain.small_accuracy, g.level, g.confidence
                )
                tighter = examples_needed(1.0 - plain.llm_rate, plain.small_accuracy, g.level, 0.99)
                lines.append(
                    "  calibration examples to certify the uncertified δ: "
                    f"{need or 'none suffice'} at {g.confidence:.0%}, "
                    f"{tighter or 'none suffice'} at 99% (now {g.n})"
                )
        return lines


class LogitsGate(BaseGate):
    """A gate over logits computed beforehand (by text), so :func:`calibrate` can reuse them."""

    def __init__(self, labels: Sequence[str], table: Mapping[str, FloatArray]) -> None:
        super().__init__(labels)
        self.table = table

    def _logits(self, texts: list[str]) -> FloatArray:
        missing = [t[:40] for t in texts if t not in self.table]
        if missing:
            raise GateError(f"internal error: no logits computed for {missing[:3]}")
        return np.stack([self.table[t] for t in texts])


def check_calibration_rows(n: int, min_rows: int = MIN_CALIBRATION_ROWS) -> None:
    """Refuse to calibrate on fewer than ``min_rows`` rows, saying why.

    Raises:
        DataError: ``n < min_rows``.
    """
    if n < min_rows:
        raise DataError(
            f"calibration needs at least {min_rows} labelled rows, got {n}: with so few, each "
            f"row moves the LLM-call rate by {1 / max(n, 1):.0%} and the fitted temperature "
            f"runs to its bound; use {RECOMMENDED_CALIBRATION_ROWS} or more (--min-rows / "
            "min_rows= lowers the floor)"
        )


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def few_rows_warning(n: int, target: Target) -> str | None:
    """What ``n`` calibration rows cannot show for ``target``, or ``None`` when they suffice.

    A precision floor ``P`` needs ``3 / (1 - P)`` rows (a route right on every one of them has
    a 95% lower bound of about ``1 - 3 / n``); a budget or an accuracy target needs
    :data:`RECOMMENDED_CALIBRATION_ROWS` for its rates to be read to a few points.
    """
    if isinstance(target, PrecisionFloor):
        p = target.min_precision
        need = math.inf if p >= 1.0 else math.ceil(3.0 / (1.0 - p) - 1e-9)
        if n >= need:
            return None
        wanted = "no finite sample" if math.isinf(need) else f"{need} or more for this target"
        return (
            f"only {n} calibration rows ({wanted}): with fewer, even a gate that is right on "
            f"every input it answers alone cannot show {_pct(p)} precision at 95% confidence; "
            "read δ with the intervals above"
        )
    if n >= RECOMMENDED_CALIBRATION_ROWS:
        return None
    if isinstance(target, Budget):
        r = target.max_llm_rate
        half = max(1.96 * math.sqrt(r * (1.0 - r) / n), 1.0 / n)
        what = f"the LLM-call rate at δ is measured to ±{half:.0%} (95%) around the {r:.0%} budget"
    else:
        what = f"each row moves the measured accuracy by {_pct(1.0 / n)}"
    return (
        f"only {n} calibration rows ({RECOMMENDED_CALIBRATION_ROWS} or more recommended): "
        f"{what}; read δ with the intervals above"
    )


_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def calibrate(
    gate: Gate,
    dev: Dataset,
    target: Target,
    *,
    fit_temp: bool = True,
    min_rows: int = MIN_CALIBRATION_ROWS,
    confidence: float | None = None,
    coverage: float | None = None,
    **policy_fields: Any,
) -> CalibrationReport:
    """Fit the temperature on ``dev``, choose δ for ``target`` and build the policy.

    The gate's temperature is set to the fitted value (for :class:`BaseGate` gates). The
    policy stores ``target.to_json()``: the target comes back exactly from the saved file.

    Args:
        gate: the gate to calibrate.
        dev: labelled calibration data (never the test split).
        target: what δ should achieve.
        fit_temp: fit the temperature (otherwise the gate's current one is kept).
        min_rows: refuse fewer calibration rows than this (see :data:`MIN_CALIBRATION_ROWS`).
        confidence: certify δ: with this probability over the calibration sample the target
            holds on new exchangeable data (:mod:`~datashunt.training.guarantees.certify`); the
            guarantee is stored in the policy. ``None`` (default): δ as before, uncertified.
        coverage: fit split-conformal label sets at this coverage (e.g. 0.9) for hard
            pruning (:mod:`~datashunt.training.guarantees.conformal`).
        **policy_fields: other :class:`ShuntPolicy` fields (``prune_epsilon``, ...).

    Raises:
        DataError: if ``dev`` holds labels the gate does not know, or fewer than ``min_rows``.
    """
    labels = tuple(gate.labels)
    unknown = sorted({e.label for e in dev.examples} - set(labels))
    if unknown:
        raise DataError(f"calibration data has labels {unknown} the gate does not know: {labels}")
    n = len(dev)
    check_calibration_rows(n, min_rows)
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[e.label] for e in dev.examples])
    if isinstance(gate, BaseGate):
        logits = gate.predict_logits(dev.texts)
        current = gate.temperature
    else:
        logits = np.log(np.clip(gate.predict_proba(dev.texts), 1e-12, 1.0))
        current = 1.0
    # "before" is the raw model (T = 1), so a re-calibration still shows what scaling buys
    before = softmax(logits, 1.0)
    temperature = fit_temperature(logits, y) if fit_temp else current
    probs = softmax(logits, temperature)
    if isinstance(gate, BaseGate):
        gate.temperature = temperature
    conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)
    threshold, note = choose_threshold(conf, correct, target)
    certified, plain = None, threshold
    if confidence is not None:
        certified = certify_threshold(conf, correct, target, confidence)
        threshold, note = certified.threshold, certified.note
        policy_fields["guarantee"] = certified.guarantee.to_json()
    if coverage is not None:
        policy_fields["conformal"] = fit_conformal(probs, y, 1.0 - coverage).to_json()
    grid = sorted({*_GRID, threshold, plain})
    table = coverage_table(conf, correct, grid, target)
    chosen = coverage_table(conf, correct, [threshold], target)[0]
    small = conf >= threshold
    metrics = {
        "n": len(y),
        "llm_rate": chosen.llm_rate,
        "small_accuracy": chosen.small_accuracy,
        "expected_accuracy": chosen.expected_accuracy,
        "dev_accuracy": float(correct.mean()),
        # what the drift alarm compares live confidences with (Shunt(..., drift=True))
        REFERENCE_KEY: reference_confidences(conf),
    }
    few = few_rows_warning(n, target)
    warnings: tuple[str, ...] = (few,) if few else ()
    policy = ShuntPolicy(
        labels=labels,
        threshold=threshold,
        temperature=temperature,
        class_recall=class_recall(probs, y, labels),
        target=target.to_json(),
        metrics=metrics,
        gate_digest=getattr(gate, "weights_digest", None),  # pins the weights it was fitted on
        **policy_fields,
    )
    return CalibrationReport(
        policy=policy,
        table=table,
        nll_before=negative_log_likelihood(before, y),
        nll_after=negative_log_likelihood(probs, y),
        ece_before=expected_calibration_error(before, y),
        ece_after=expected_calibration_error(probs, y),
        dev_accuracy=float(correct.mean()),
        note=note,
        small_accuracy_interval=(
            wilson_interval(int(correct[small].sum()), int(small.sum())) if small.any() else None
        ),
        llm_rate_interval=wilson_interval(int((~small).sum()), n),
        warnings=warnings,
        certified=certified,
        uncertified_threshold=plain if certified is not None else None,
        uncertified_llm_rate=float((conf < plain).mean()) if certified is not None else None,
    )
