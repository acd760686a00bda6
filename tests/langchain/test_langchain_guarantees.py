"""Issue 13 through the LangChain adapter: receipts, audits and drift as events and metadata."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from datashunt import CallStore, DriftWarning, ShuntPolicy
from datashunt.cli import main
from datashunt.engine.watch import REFERENCE_KEY
from langchain_datashunt import DRIFT_EVENT, RECEIPT_EVENT, DataShuntRunnable
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat

LABELS = ("negative", "positive")


class _Collect(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        self.events.append((name, data))

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self.events.append(("chat_model_start", kw.get("metadata")))


def test_receipts_in_output_events_and_run_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, guarantee={"kind": "precision"})
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=policy, llm=CountingChat(answer=lambda p: "negative"),
        store=tmp_path / "c.sqlite", audit_rate=1.0, audit_seed=1, prices={"*": (1.0, 1.0)},
    )  # fmt: skip
    handler = _Collect()
    small, asked = shunt.batch(["good good", "plain"], config={"callbacks": [handler]})
    assert small.receipt is not None and small.receipt["policy_version"] == policy.version
    assert small.receipt["audited"] and small.audit == {
        "label": "negative", "source": "llm", "record_id": small.audit["record_id"]  # type: ignore[index]
    }  # fmt: skip
    assert asked.receipt is not None and asked.receipt["guarantee"] == {"kind": "precision"}
    receipts = [d for n, d in handler.events if n == RECEIPT_EVENT]
    assert len(receipts) == 2 and receipts[0]["threshold"] == 0.9
    meta = [d for n, d in handler.events if n == "chat_model_start"]
    assert meta and meta[0]["datashunt_policy_version"] == policy.version
    assert "datashunt_p_wrong" in meta[0]
    records = list(CallStore(tmp_path / "c.sqlite", read_only=True).iter())
    assert sum(bool((r.extra or {}).get("audit")) for r in records) == 1
    # `datashunt monitor` reads a store the runnable wrote (as `make demo` does)
    assert main(["monitor", "--store", str(tmp_path / "c.sqlite")]) == 0
    assert "inputs 2, LLM share 50.0%" in capsys.readouterr().out


async def test_async_audits_and_drift_event() -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.99] * 200})
    llm = CountingChat(answer=lambda p: "positive")
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=policy, llm=llm, drift=True, audit_rate=1.0
    )
    handler = _Collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        outs = await shunt.abatch(
            ["good"] + [f"meh {i}" for i in range(449)], config={"callbacks": [handler]}
        )
    assert outs[0].audit is not None and outs[0].audit["label"] == "positive"
    drift = [d for n, d in handler.events if n == DRIFT_EVENT]
    assert len(drift) == 1 and drift[0]["at"] == 400  # the default window: 400 inputs
