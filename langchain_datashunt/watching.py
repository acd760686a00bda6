"""What the runnable adds for a shunt that measures itself: audits, receipt and drift events.

The engine draws the audits and runs the drift test (:mod:`datashunt.engine.watch`); this module
only turns them into LangChain terms: an audit asked through the runnable's own chat model, the
``datashunt_receipt`` and ``datashunt_drift`` custom events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datashunt import LLMError, Shunt, ShuntResult
from datashunt.engine import DriftAlarm, ModelCall

from .output import ShuntOutput
from .planning import Item

__all__ = ["DRIFT_EVENT", "RECEIPT_EVENT", "AlarmInbox", "audited", "merge_audit"]

#: Custom event with each result's receipt (policy version, δ, guarantee, p_wrong, tokens, cost).
RECEIPT_EVENT = "datashunt_receipt"
#: Custom event dispatched once when the drift alarm fires.
DRIFT_EVENT = "datashunt_drift"


class AlarmInbox:
    """Collects drift alarms from the engine until the runnable dispatches them as events."""

    def __init__(self, shunt: Shunt) -> None:
        self.pending: list[DriftAlarm] = []
        shunt.watch.listeners.append(self.pending.append)

    def take(self) -> list[dict[str, Any]]:
        """The alarms since the last call, as event payloads."""
        out = [
            {"at": a.at, "statistic": a.statistic, "pvalue": a.pvalue, "detail": a.describe()}
            for a in self.pending
        ]
        self.pending.clear()
        return out


def audited(shunt: Shunt, smalls: Sequence[Item]) -> list[Item]:
    """The gate-answered items drawn for an audit (``audit_rate``)."""
    picked = shunt.watch.audited([it.decision for it in smalls])
    return [smalls[j] for j in picked]


def merge_audit(small: ShuntOutput, audit: ShuntResult | Exception) -> ShuntOutput:
    """The gate's output with the audit's answer; the receipt marked audited."""
    if isinstance(audit, Exception):
        return small.model_copy(update={"audit": {"error": str(audit)}})
    note = {"label": audit.label, "source": audit.source, "record_id": audit.record_id}
    receipt = dict(small.receipt or {})
    if audit.receipt is not None:
        for key in ("prompt_tokens", "completion_tokens", "cost", "model"):
            receipt[key] = getattr(audit.receipt, key)
    receipt["audited"] = True
    return small.model_copy(update={"audit": note, "receipt": receipt})


def ask_audit(shunt: Shunt, item: Item, call: ModelCall[Any]) -> ShuntResult | Exception:
    """Ask the LLM about a gate answer, through the engine (recorded as an audit)."""
    try:
        return shunt.ask(shunt.audit_request(item.text, item.decision), call)
    except LLMError as exc:
        return exc


async def aask_audit(shunt: Shunt, item: Item, call: ModelCall[Any]) -> ShuntResult | Exception:
    """Async :func:`ask_audit`."""
    try:
        return await shunt.aask(shunt.audit_request(item.text, item.decision), call)
    except LLMError as exc:
        return exc
