"""What a distillation run reports: per-slice accuracy and LLM-call rate, before and after."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data import Dataset
from ...gates import FloatArray, softmax
from ...policy import ShuntPolicy
from ..fitting.train import TRAIN_REPORT_FILE
from ..guarantees.targets import describe_target
from .distill_data import LoggedInput, SelectionCounts, StoreCounts
from .distill_train import StageLoss

__all__ = [
    "DISTILL_REPORT_FILE",
    "DistillReport",
    "SliceFigures",
    "build_slices",
    "slice_figures",
    "write_outputs",
]

#: The report written beside the distilled gate.
DISTILL_REPORT_FILE = "datashunt_distill.json"


@dataclass(frozen=True)
class SliceFigures:
    """Accuracy and LLM-call rate on one slice of data, for the old and the new gate.

    ``accuracy_*`` is against gold labels, or against the LLM's own answers on the logged
    inputs (``reference="llm"``).
    """

    name: str
    n: int
    reference: str
    accuracy_before: float
    accuracy_after: float
    llm_rate_before: float
    llm_rate_after: float


def _route(logits: FloatArray, temperature: float, threshold: float) -> tuple[Any, Any]:
    probs = softmax(logits, temperature)
    return probs.argmax(axis=1), probs.max(axis=1) < threshold


def slice_figures(
    name: str,
    y: Sequence[int],
    before: FloatArray,
    after: FloatArray,
    old: tuple[float, float],
    new: tuple[float, float],
    reference: str = "gold",
) -> SliceFigures:
    """Figures for one slice from both gates' logits; ``old``/``new`` are ``(T, δ)``."""
    yy = np.asarray(y)
    pred_b, llm_b = _route(before, *old)
    pred_a, llm_a = _route(after, *new)
    return SliceFigures(
        name,
        len(yy),
        reference,
        float((pred_b == yy).mean()),
        float((pred_a == yy).mean()),
        float(llm_b.mean()),
        float(llm_a.mean()),
    )


def build_slices(
    before: Callable[[Sequence[str]], FloatArray],
    after: Mapping[str, FloatArray],
    old: tuple[float, float],
    new: tuple[float, float],
    *,
    labels: Sequence[str],
    dev: Dataset,
    eval_data: Dataset | None,
    answered: Sequence[LoggedInput],
) -> list[SliceFigures]:
    """The report's slices: dev, eval and each eval group (gold), logged LLM answers (agreement).

    Args:
        before: the old gate's logits for texts; ``after``: the new gate's, by text.
        old, new: ``(T, δ)`` of the old and the new policy.
    """
    index = {lab: i for i, lab in enumerate(labels)}

    def figures(name: str, texts: Sequence[str], y: Sequence[int], ref: str) -> SliceFigures:
        a = np.stack([after[t] for t in texts]) if texts else np.zeros((0, len(labels)))
        return slice_figures(name, y, before(texts), a, old, new, ref)

    def gold(data: Dataset) -> list[int]:
        return [index[e.label] for e in data.examples]

    slices = [figures("dev", dev.texts, gold(dev), "gold")]
    if eval_data is not None:
        ex = eval_data.examples
        slices.append(figures("eval", eval_data.texts, gold(eval_data), "gold"))
        for g in sorted({e.group for e in ex if e.group is not None}):
            part = [e for e in ex if e.group == g]
            y = [index[e.label] for e in part]
            slices.append(figures(f"eval/{g}", [e.text for e in part], y, "gold"))
    if answered:
        y_llm = [index[r.llm_label] for r in answered if r.llm_label is not None]
        slices.append(figures("logged LLM answers", [r.text for r in answered], y_llm, "llm"))
    return slices


@dataclass(frozen=True)
class DistillReport:
    """The outcome of a distillation run (also written as ``datashunt_distill.json``).

    Attributes:
        out_dir: the new gate directory (loadable by :func:`datashunt.load_gate`).
        method: ``"2cd"``, ``"stage1"`` or ``"finetune"``.
        store: what was read from the call store and skipped.
        selection: how inputs were split between the stages.
        threshold_before / temperature_before: the production gate's δ and T.
        threshold_after / temperature_after: the re-calibrated δ and T of the new gate.
        slices: accuracy and LLM-call rate per slice, before and after.
        target: the new δ's calibration target, as data (``target.to_json()``).
        losses: mean loss per stage and round.
    """

    out_dir: str
    gate_dir: str
    method: str
    labels: tuple[str, ...]
    store: StoreCounts
    selection: SelectionCounts
    threshold_before: float
    temperature_before: float
    threshold_after: float
    temperature_after: float
    target: Mapping[str, Any]
    slices: tuple[SliceFigures, ...]
    losses: tuple[StageLoss, ...]
    config: Mapping[str, Any]
    seconds: float
    notes: tuple[str, ...] = ()

    def slice(self, name: str) -> SliceFigures:
        """The figures of one slice by name (``"dev"``, ``"eval"``, ``"eval/books"``, ...)."""
        for s in self.slices:
            if s.name == name:
                return s
        raise KeyError(f"no slice {name!r}; slices: {[s.name for s in self.slices]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def format(self) -> str:
        """A printable summary: what was used, the policy change, and the slice table."""
        st, se = self.store, self.selection
        lines = [
            f"{self.method} distillation: {self.gate_dir} -> {self.out_dir} ({self.seconds:.1f}s)",
            f"store: {st.records} records, {st.inputs} distinct inputs, {st.llm_answers} usable "
            f"LLM answers; skipped {st.llm_errors} LLM errors, {st.unparsed} unparsed answers, "
            f"{st.no_text} records without input text; {st.no_llm_confidence} answers had no "
            "C_l (no logprobs)",
            f"stage 1: {se.stage1} inputs (C_s1 < δ={se.threshold:.4f}, C_l > "
            f"δ_l={se.llm_min_confidence:.2f}; T={se.stage1_temperature:.3g}); not used: "
            f"{se.low_llm_confidence} with C_l <= δ_l, {se.unscored_skipped} without C_l, "
            f"{se.uncertain_without_answer} uncertain without an LLM answer",
            f"stage 2: {se.stage2_logged} logged + {se.stage2_train} training inputs "
            f"(C_s1 >= δ; T={se.stage2_temperature:.3g}; {se.train_uncertain} uncertain "
            "training inputs left out)",
            f"policy: δ {self.threshold_before:.4f} -> {self.threshold_after:.4f}, "
            f"T {self.temperature_before:.3f} -> {self.temperature_after:.3f} "
            f"({describe_target(self.target)})",
            *(f"note: {n}" for n in self.notes),
            "",
            f"{'slice':<28}{'n':>6}{'acc before':>12}{'acc after':>11}"
            f"{'LLM-rate before':>17}{'after':>8}",
        ]
        for s in self.slices:
            mark = "*" if s.reference == "llm" else ""
            lines.append(
                f"{s.name + mark:<28}{s.n:>6}{s.accuracy_before:>12.3f}{s.accuracy_after:>11.3f}"
                f"{s.llm_rate_before:>17.3f}{s.llm_rate_after:>8.3f}"
            )
        if any(s.reference == "llm" for s in self.slices):
            lines.append("* accuracy = agreement with the LLM's logged answer")
        return "\n".join(lines)


def write_outputs(out: Path, policy: ShuntPolicy, report: DistillReport, *, n_train: int) -> None:
    """Write the policy, ``datashunt_distill.json`` and a ``train-gate``-style record to ``out``."""
    policy.save(out)
    body = json.dumps(report.to_dict(), indent=2) + "\n"
    (out / DISTILL_REPORT_FILE).write_text(body, encoding="utf-8")
    dev = report.slice("dev")
    record = {
        "report": {
            "out_dir": report.out_dir,
            "kind": f"distill-{report.method}",
            "labels": list(report.labels),
            "n_train": n_train,
            "n_dev": dev.n,
            "dev_accuracy": dev.accuracy_after,
            "majority_accuracy": None,
            "seconds": report.seconds,
        },
        "config": dict(report.config),
        "backbone": report.gate_dir,
    }
    (out / TRAIN_REPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
