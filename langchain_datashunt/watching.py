"""The runnable's custom events: each decision, each receipt, and the drift alarm.

The engine draws the audits and runs the drift test (:mod:`datashunt.engine.watch`); this module
only turns what it saw into LangChain terms: the ``datashunt_decision``, ``datashunt_receipt``
and ``datashunt_drift`` custom events.
"""

from __future__ import annotations

from typing import Any

from datashunt import Decision, Shunt
from datashunt.engine import DriftAlarm

__all__ = ["DRIFT_EVENT", "RECEIPT_EVENT", "AlarmInbox", "event_data"]

#: Custom event with each result's receipt (policy version, δ, guarantee, p_wrong, tokens, cost).
RECEIPT_EVENT = "datashunt_receipt"
#: Custom event dispatched once when the drift alarm fires.
DRIFT_EVENT = "datashunt_drift"


class AlarmInbox:
    """Collects drift alarms from the engine until the runnable dispatches them as events."""

    def __init__(self, shunt: Shunt) -> None:
        self.shunt = shunt
        self.pending: list[DriftAlarm] = []
        shunt.watch.listeners.append(self.pending.append)

    def take(self) -> list[dict[str, Any]]:
        """The alarms since the last call, as event payloads (with what the shunt serves
        now: ``shadowing`` when the alarm sent it back to the LLM, see ``on_drift``)."""
        out = [
            {
                "at": a.at,
                "test": a.test,
                "statistic": a.statistic,
                "pvalue": a.pvalue,
                "detail": a.describe(),
                "serving": self.shunt.serving.version,
                "shadowing": self.shunt.shadowing,
            }
            for a in self.pending
        ]
        self.pending.clear()
        return out


def event_data(decision: Decision) -> dict[str, Any]:
    """The payload of the ``datashunt_decision`` custom event."""
    return {
        "route": decision.route,
        "label": decision.label,
        "confidence": decision.confidence,
        "probabilities": dict(decision.probabilities),
        "candidates": list(decision.candidates),
        "reason": decision.reason,
    }
