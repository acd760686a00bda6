"""The representation test's alarm through the LangChain adapter: the same drift event."""

from __future__ import annotations

import warnings

from datashunt import DriftWarning, ShuntPolicy
from langchain_datashunt import DRIFT_EVENT, DataShuntRunnable
from tests.core.test_drift_representation import VectorGate, _representation, _texts
from tests.langchain.test_langchain_guarantees import _Collect
from tests.support.lc_fakes import CountingChat


async def test_representation_alarm_is_the_drift_custom_event() -> None:
    gate = VectorGate()
    runnable = DataShuntRunnable.from_gate(
        gate=gate,
        policy=ShuntPolicy(labels=gate.labels),
        llm=CountingChat(answer=lambda p: "positive"),
    )
    runnable.shunt.watch.representation = _representation(gate)
    handler = _Collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        runnable.batch(_texts("live", 150), config={"callbacks": [handler]})
        assert not [n for n, _ in handler.events if n == DRIFT_EVENT]
        await runnable.abatch(_texts("moved", 200), config={"callbacks": [handler]})
    drift = [d for n, d in handler.events if n == DRIFT_EVENT]
    assert len(drift) == 1 and "inputs drifted" in drift[0]["detail"] and drift[0]["at"] > 150
