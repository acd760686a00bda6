"""LlamaIndex instrumentation events of a shunt: each result's receipt and drift alarms, seen by
any handler added to the dispatcher (``dispatcher.add_event_handler``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from llama_index.core.instrumentation.events import BaseEvent
from llama_index_instrumentation import get_dispatcher

from datashunt import Shunt, ShuntResult
from datashunt.adapters import drift_event
from datashunt.engine import DriftAlarm

__all__ = ["ShuntDriftEvent", "ShuntReceiptEvent", "watch_events"]

_dispatcher = get_dispatcher(__name__)


class ShuntReceiptEvent(BaseEvent):
    """One result's receipt (the policy's version, δ, the guarantee, the probability that the
    gate is wrong, the call's tokens and cost), its route and label."""

    route: str
    label: str
    receipt: dict[str, Any]

    @classmethod
    def class_name(cls) -> str:
        return "ShuntReceiptEvent"


class ShuntDriftEvent(BaseEvent):
    """The drift alarm fired: live gate confidences (or the LLM's agreement with the gate on
    audits: ``test="audit"``) no longer match the calibration ones. ``shadowing`` says the
    shunt went back to sending every input to the LLM (``on_drift="shadow"``)."""

    at: int
    statistic: float
    pvalue: float
    detail: str
    test: str = "confidence"
    serving: str | None = None
    shadowing: bool = False

    @classmethod
    def class_name(cls) -> str:
        return "ShuntDriftEvent"


def _receipt(result: ShuntResult) -> None:
    if result.receipt is not None:
        data = result.receipt.to_json()
        _dispatcher.event(ShuntReceiptEvent(route=result.route, label=result.label, receipt=data))


def _drift(shunt: Shunt, alarm: DriftAlarm) -> None:
    """Dispatch one of ``shunt``'s drift alarms, with what the shunt serves after it."""
    _dispatcher.event(ShuntDriftEvent(**drift_event(alarm, shunt.serving.version, shunt.shadowing)))


def watch_events(shunt: Shunt) -> None:
    """Dispatch ``shunt``'s receipts and drift alarms as events (once per shunt)."""
    if _receipt not in shunt.watch.on_result:  # both are added here, or neither
        shunt.watch.on_result.append(_receipt)
        shunt.watch.listeners.append(partial(_drift, shunt))
