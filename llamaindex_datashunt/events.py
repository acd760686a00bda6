"""LlamaIndex instrumentation events of a shunt: each result's receipt and drift alarms, seen by
any handler added to the dispatcher (``dispatcher.add_event_handler``)."""

from __future__ import annotations

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


class _Drift:
    """Dispatches one shunt's drift alarms, with what the shunt serves after them."""

    def __init__(self, shunt: Shunt) -> None:
        self.shunt = shunt

    def __call__(self, alarm: DriftAlarm) -> None:
        data = drift_event(alarm, self.shunt.serving.version, self.shunt.shadowing)
        _dispatcher.event(ShuntDriftEvent(**data))


def watch_events(shunt: Shunt) -> None:
    """Dispatch ``shunt``'s receipts and drift alarms as events (once per shunt)."""
    if _receipt not in shunt.watch.on_result:
        shunt.watch.on_result.append(_receipt)
    if not any(isinstance(f, _Drift) for f in shunt.watch.listeners):
        shunt.watch.listeners.append(_Drift(shunt))
