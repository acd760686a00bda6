"""Issue 13 through the LlamaIndex adapter: receipts and drift as instrumentation events."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import MockLLM
from llama_index.core.tools import ToolMetadata
from pydantic import PrivateAttr

from datashunt import CallStore, DriftWarning, Shunt, ShuntPolicy
from datashunt.engine.watch import REFERENCE_KEY
from llamaindex_datashunt import DataShuntSelector, ShuntDriftEvent, ShuntReceiptEvent
from tests.conftest import KeywordGate

LABELS = ("negative", "positive")
CHOICES = [ToolMetadata(name=lab, description=lab) for lab in LABELS]


class _Seen(BaseEventHandler):
    _events: list[BaseEvent] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Seen"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self._events.append(event)


def test_receipt_and_drift_events() -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.99] * 200})
    shunt = Shunt(KeywordGate(), policy, drift=True)
    seen = _Seen()
    root = get_dispatcher()
    root.add_event_handler(seen)
    try:
        selector = DataShuntSelector(shunt, MockLLM())
        DataShuntSelector(
            shunt, MockLLM()
        )  # a second adapter over the same shunt: events not doubled
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DriftWarning)
            for i in range(200):
                selector.select(CHOICES, f"good {i}" if i < 1 else f"bad bad {i}")
            shunt.decide([f"meh {i}" for i in range(200)])
    finally:
        root.event_handlers.remove(seen)
    receipts = [e for e in seen._events if isinstance(e, ShuntReceiptEvent)]
    assert len(receipts) == 200 and receipts[0].receipt["policy_version"] == policy.version
    assert receipts[0].route == "small" and receipts[0].receipt["p_wrong"] < 0.1
    drift = [e for e in seen._events if isinstance(e, ShuntDriftEvent)]
    assert len(drift) == 1 and "re-calibrate" in drift[0].detail


async def test_selector_audits_gate_answers(tmp_path: Path) -> None:
    url = tmp_path / "c.sqlite"
    shunt = Shunt(KeywordGate(), ShuntPolicy(labels=LABELS), store=url, audit_rate=1.0)
    selector = DataShuntSelector(shunt, MockLLM())
    assert selector.select(CHOICES, "good good").selections[0].index == 1
    await selector.aselect(CHOICES, "bad bad")
    audits = [r for r in CallStore(url, read_only=True).iter() if (r.extra or {}).get("audit")]
    assert len(audits) == 2 and all(r.route == "small" and r.prompt for r in audits)
