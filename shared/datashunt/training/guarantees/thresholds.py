"""Choosing δ: what each threshold does on labelled data, and the one a target asks for."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, DataError
from ...gates import FloatArray
from ..fitting.metrics import ArrayLike
from .targets import Budget, MaxAccuracy, PrecisionFloor, Target

__all__ = ["CoverageRow", "choose_threshold", "coverage_table", "format_table"]


@dataclass(frozen=True)
class CoverageRow:
    """One row of the coverage/accuracy table: what a threshold δ would do on the data."""

    threshold: float
    llm_rate: float
    small_accuracy: float | None
    expected_accuracy: float | None


def _llm_acc_below(conf: FloatArray, delta: float, target: MaxAccuracy) -> float:
    if target.llm_accuracy is not None:
        return target.llm_accuracy
    lc = np.asarray(target.llm_correct, dtype=float)
    below = lc[(conf < delta) & ~np.isnan(lc)]
    return float(below.mean()) if below.size else float(np.nanmean(lc))


def coverage_table(
    confidence: FloatArray,
    correct: FloatArray,
    thresholds: ArrayLike,
    target: Target | None = None,
) -> list[CoverageRow]:
    """What each threshold does: LLM-call rate, accuracy of the small route, and (for a
    :class:`MaxAccuracy` target) the expected accuracy of the whole shunt."""
    conf, ok = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    rows = []
    for d in thresholds:
        small = conf >= d
        small_acc = float(ok[small].mean()) if small.any() else None
        exp = None
        if isinstance(target, MaxAccuracy):
            exp = float(
                (ok[small].sum() + (~small).sum() * _llm_acc_below(conf, d, target)) / len(conf)
            )
        rows.append(CoverageRow(float(d), float((~small).mean()), small_acc, exp))
    return rows


def choose_threshold(
    confidence: FloatArray, correct: FloatArray, target: Target
) -> tuple[float, str]:
    """Choose δ for ``target`` on the given confidences and gate correctness.

    Returns:
        ``(threshold, note)``; the note says when the target could not be met.
    """
    conf = np.asarray(confidence, dtype=float)
    if conf.size == 0:
        raise DataError("cannot choose a threshold on zero examples")
    if isinstance(target, MaxAccuracy) and target.llm_correct is not None:
        if len(target.llm_correct) != conf.size:
            raise ConfigError(
                f"llm_correct has {len(target.llm_correct)} entries for {conf.size} examples"
            )
        if np.all(np.isnan(np.asarray(target.llm_correct, dtype=float))):
            raise ConfigError("llm_correct has no measured entry (all NaN)")
    cands = np.unique(np.concatenate([conf, [0.0, 1.0]]))
    cands = cands[(cands >= 0.0) & (cands <= 1.0)]
    rows = coverage_table(conf, correct, cands, target)
    if isinstance(target, Budget):
        ok = [r for r in rows if r.llm_rate <= target.max_llm_rate + 1e-12]
        best = max(ok, key=lambda r: (r.llm_rate, r.threshold))
        return best.threshold, ""
    if isinstance(target, PrecisionFloor):
        ok = [
            r
            for r in rows
            if r.small_accuracy is not None and r.small_accuracy >= target.min_precision
        ]
        if not ok:
            return 1.0, "precision floor not reachable on this data: δ = 1 sends all to the LLM"
        return min(ok, key=lambda r: r.threshold).threshold, ""
    best = max(rows, key=lambda r: (r.expected_accuracy or 0.0, -r.llm_rate))
    return best.threshold, ""


def format_table(rows: Sequence[CoverageRow], chosen: float | None = None) -> str:
    """Render coverage rows as a fixed-width text table (``*`` marks the chosen δ)."""

    def f(x: float | None) -> str:
        return "   -  " if x is None else f"{x:6.3f}"

    lines = ["      δ   LLM-rate  small-acc  exp-acc", "  ------  --------  ---------  -------"]
    for r in rows:
        mark = "*" if chosen is not None and math.isclose(r.threshold, chosen) else " "
        lines.append(
            f"{mark} {r.threshold:6.4f}    {f(r.llm_rate)}     {f(r.small_accuracy)}   "
            f"{f(r.expected_accuracy)}"
        )
    return "\n".join(lines)
