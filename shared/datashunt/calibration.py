"""Calibration: fit the gate's temperature, measure it, and choose the shunt threshold δ.

δ is chosen on labelled data for one of three targets:

* :class:`Budget` — at most a share of inputs goes to the LLM;
* :class:`PrecisionFloor` — what the gate answers alone is at least this accurate;
* :class:`MaxAccuracy` — the best expected accuracy, given the LLM's accuracy (a number, or
  per-example correctness measured on a dev sample with the LLM in the loop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .data import Dataset
from .errors import ConfigError, DataError
from .gates import BaseGate, FloatArray, Gate, softmax
from .policy import ShuntPolicy

__all__ = [
    "Budget",
    "CalibrationReport",
    "CoverageRow",
    "MaxAccuracy",
    "PrecisionFloor",
    "Target",
    "calibrate",
    "choose_threshold",
    "class_recall",
    "coverage_table",
    "expected_calibration_error",
    "fit_temperature",
    "format_table",
    "measure_llm",
    "negative_log_likelihood",
    "parse_target",
]


@dataclass(frozen=True)
class Budget:
    """At most ``max_llm_rate`` of the inputs go to the LLM (0.3 = 30%)."""

    max_llm_rate: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_llm_rate <= 1.0:
            raise ConfigError(f"max_llm_rate must be in [0, 1], got {self.max_llm_rate}")

    def describe(self) -> str:
        return f"budget: LLM-call rate <= {self.max_llm_rate:.0%}"


@dataclass(frozen=True)
class PrecisionFloor:
    """The gate's accuracy on the inputs it answers alone is at least ``min_precision``."""

    min_precision: float

    def __post_init__(self) -> None:
        if not 0.0 < self.min_precision <= 1.0:
            raise ConfigError(f"min_precision must be in (0, 1], got {self.min_precision}")

    def describe(self) -> str:
        return f"precision floor: small-route accuracy >= {self.min_precision:.1%}"


@dataclass(frozen=True)
class MaxAccuracy:
    """Maximise expected accuracy, given the LLM's accuracy.

    Attributes:
        llm_accuracy: the LLM's accuracy as one number, or
        llm_correct: per-example LLM correctness on the calibration data (1/0, NaN where not
            measured); below each δ the LLM's accuracy is estimated on the measured inputs that
            would go to it, which captures that the LLM is usually worse on hard inputs too.
    """

    llm_accuracy: float | None = None
    llm_correct: Sequence[float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.llm_accuracy is None) == (self.llm_correct is None):
            raise ConfigError("MaxAccuracy needs exactly one of llm_accuracy or llm_correct")
        if self.llm_accuracy is not None and not 0.0 <= self.llm_accuracy <= 1.0:
            raise ConfigError(f"llm_accuracy must be in [0, 1], got {self.llm_accuracy}")

    def describe(self) -> str:
        if self.llm_accuracy is not None:
            return f"max expected accuracy (LLM accuracy {self.llm_accuracy:.1%})"
        measured = int(np.sum(~np.isnan(np.asarray(self.llm_correct, dtype=float))))
        return f"max expected accuracy (LLM measured on {measured} inputs)"


Target = Budget | PrecisionFloor | MaxAccuracy
#: Label indices or 0/1 correctness: a sequence or a NumPy array.
ArrayLike = Sequence[int] | Sequence[float] | npt.NDArray[Any]


def parse_target(spec: str, *, llm_accuracy: float | None = None) -> Target:
    """Parse a CLI target: ``budget:0.3``, ``precision:0.97`` or ``accuracy`` (needs the LLM's
    accuracy, from ``llm_accuracy`` or as ``accuracy:0.92``)."""
    kind, _, value = spec.partition(":")
    try:
        if kind == "budget":
            return Budget(float(value))
        if kind == "precision":
            return PrecisionFloor(float(value))
        if kind == "accuracy":
            acc = float(value) if value else llm_accuracy
            if acc is None:
                raise ConfigError("target 'accuracy' needs the LLM's accuracy: accuracy:0.92")
            return MaxAccuracy(llm_accuracy=acc)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"target {spec!r}: {value!r} is not a number") from exc
    raise ConfigError(f"unknown target {spec!r}: use budget:R, precision:P or accuracy:A")


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


@dataclass(frozen=True)
class CalibrationReport:
    """The outcome of :func:`calibrate`: the policy and the figures it was chosen from."""

    policy: ShuntPolicy
    table: list[CoverageRow]
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    dev_accuracy: float
    note: str = ""

    def format(self) -> str:
        """A printable summary: calibration figures, then the coverage table."""
        p = self.policy
        head = [
            f"temperature T = {p.temperature:.3f}   (fitted on {p.metrics.get('n', '?')} examples)",
            f"NLL  before (T=1) {self.nll_before:.4f}   after {self.nll_after:.4f}",
            f"ECE  before (T=1) {self.ece_before:.4f}   after {self.ece_after:.4f}",
            f"gate accuracy {self.dev_accuracy:.4f}",
            f"target: {p.target}  ->  δ = {p.threshold:.4f}",
        ]
        if self.note:
            head.append(f"note: {self.note}")
        return "\n".join(head) + "\n\n" + format_table(self.table, chosen=p.threshold)


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


_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def calibrate(
    gate: Gate,
    dev: Dataset,
    target: Target,
    *,
    fit_temp: bool = True,
    **policy_fields: Any,
) -> CalibrationReport:
    """Fit the temperature on ``dev``, choose δ for ``target`` and build the policy.

    The gate's temperature is set to the fitted value (for :class:`BaseGate` gates).

    Args:
        gate: the gate to calibrate.
        dev: labelled calibration data (never the test split).
        target: what δ should achieve.
        fit_temp: fit the temperature (otherwise the gate's current one is kept).
        **policy_fields: other :class:`ShuntPolicy` fields (``prune_epsilon``, ...).

    Raises:
        DataError: if ``dev`` holds labels the gate does not know.
    """
    labels = tuple(gate.labels)
    unknown = sorted({e.label for e in dev.examples} - set(labels))
    if unknown:
        raise DataError(f"calibration data has labels {unknown} the gate does not know: {labels}")
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
    grid = sorted({*_GRID, threshold})
    table = coverage_table(conf, correct, grid, target)
    chosen = coverage_table(conf, correct, [threshold], target)[0]
    metrics = {
        "n": len(y),
        "llm_rate": chosen.llm_rate,
        "small_accuracy": chosen.small_accuracy,
        "expected_accuracy": chosen.expected_accuracy,
        "dev_accuracy": float(correct.mean()),
    }
    policy = ShuntPolicy(
        labels=labels,
        threshold=threshold,
        temperature=temperature,
        class_recall=class_recall(probs, y, labels),
        target=target.describe(),
        metrics=metrics,
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
    )


def measure_llm(
    gate: Gate,
    dev: Dataset,
    llm: Any,
    *,
    sample: int = 100,
    seed: int = 0,
    max_concurrency: int = 2,
) -> npt.NDArray[np.float64]:
    """Ask the LLM about a fixed random sample of ``dev`` (plain prompt, no gate help).

    Returns:
        Per-example correctness for :class:`MaxAccuracy`: 1.0 right, 0.0 wrong (an unparseable
        answer or a failed call counts as wrong: that is what it costs), NaN where not asked.
    """
    from .shunt import Shunt

    n = len(dev)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    shunt = Shunt(
        gate,
        ShuntPolicy(labels=tuple(gate.labels), threshold=1.0),
        llm=llm,
        prompt_mode="none",
        max_concurrency=max_concurrency,
    )
    texts = [dev.examples[i].text for i in idx]
    out = np.full(n, np.nan)
    for i, res in zip(idx, shunt.run_batch(texts, return_exceptions=True), strict=True):
        if isinstance(res, Exception) or res.route != "llm":
            continue
        out[i] = float(res.source == "llm" and res.label == dev.examples[i].label)
    return out
