"""What an adapter reports, as JSON-ready values: its events' payloads and its metadata."""

from __future__ import annotations

from typing import Any

from ..engine import DriftAlarm, Shunt
from ..generative import GenerativeResult
from ..types import Decision, ShuntResult

__all__ = [
    "decision_event",
    "decision_metadata",
    "drift_event",
    "generative_summary",
    "result_event",
    "result_summary",
]


def generative_summary(result: GenerativeResult) -> dict[str, Any]:
    """A generative answer's route as JSON-ready metadata (what an adapter attaches to the
    message it returns)."""
    return {
        "route": result.route,
        "source": result.source,
        "score": result.judgement.score,
        "reason": result.judgement.reason,
        "small_answer": result.small.text if result.small is not None else None,
        "error": result.error,
        "small_error": result.small_error,
        "record_id": result.record_id,
    }


def decision_event(decision: Decision) -> dict[str, Any]:
    """A gate decision as an event payload."""
    return {
        "route": decision.route,
        "label": decision.label,
        "confidence": decision.confidence,
        "probabilities": dict(decision.probabilities),
        "candidates": list(decision.candidates),
        "reason": decision.reason,
    }


def drift_event(alarm: DriftAlarm, serving: str | None, shadowing: bool) -> dict[str, Any]:
    """A drift alarm as an event payload, with what the shunt serves after it (``shadowing``:
    the alarm sent every input back to the LLM, see ``on_drift``)."""
    return {
        "at": alarm.at,
        "test": alarm.test,
        "statistic": alarm.statistic,
        "pvalue": alarm.pvalue,
        "detail": alarm.describe(),
        "serving": serving,
        "shadowing": shadowing,
    }


def result_event(result: ShuntResult) -> dict[str, Any]:
    """A result as an event payload: its decision's (:func:`decision_event`), then the final
    label, who answered, ``C_l``, the error, the record, the attempts, the receipt and the
    audit (the LLM's answer when this gate answer was audited)."""
    return {
        **decision_event(result.decision),
        "label": result.label,
        "source": result.source,
        "llm_confidence": result.llm_confidence,
        "error": result.error,
        "record_id": result.record_id,
        "attempts": result.attempts,
        "receipt": result.receipt.to_json() if result.receipt is not None else None,
        "audit": dict(result.extra["audit"]) if "audit" in result.extra else None,
    }


def result_summary(result: ShuntResult) -> dict[str, Any]:
    """A result's route and confidences as JSON-ready metadata (what an adapter attaches to
    the response it returns)."""
    d = result.decision
    return {
        "route": result.route,
        "source": result.source,
        "label": result.label,
        "gate_label": d.label,
        "gate_confidence": d.confidence,
        "llm_confidence": result.llm_confidence,
        "candidates": list(d.candidates),
        "error": result.error,
        "record_id": result.record_id,
    }


def decision_metadata(decision: Decision, shunt: Shunt, *, recorded: bool) -> dict[str, Any]:
    """Run metadata that shows the gate's decision in a framework's callbacks and traces: its
    route, label, confidence and candidates, and the policy that decided (its version, δ,
    guarantee); ``recorded``: the shunt records the model call itself."""
    policy = shunt.policy_of(decision)
    return {
        "datashunt_route": decision.route,
        "datashunt_label": decision.label,
        "datashunt_confidence": round(float(decision.confidence), 6),
        "datashunt_candidates": list(decision.candidates),
        "datashunt_recorded": recorded,
        "datashunt_policy_version": decision.policy_version or policy.version,
        "datashunt_threshold": policy.threshold,
        "datashunt_guarantee": policy.guarantee,
        "datashunt_p_wrong": max(0.0, 1.0 - float(decision.confidence)),
        "datashunt_drift": shunt.watch.drifted,
    }
