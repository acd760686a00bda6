"""The representation test's alarm through the LlamaIndex adapter: a ShuntDriftEvent."""

from __future__ import annotations

import warnings

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import MockLLM

from datashunt import DriftWarning, Shunt, ShuntPolicy
from llamaindex_datashunt import DataShuntSelector, ShuntDriftEvent
from tests.core.test_drift_representation import VectorGate, _representation, _texts
from tests.llamaindex.test_llamaindex_guarantees import CHOICES, _Seen


def test_representation_alarm_is_a_drift_event() -> None:
    gate = VectorGate()
    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels))
    shunt.watch.representation = _representation(gate)
    seen = _Seen()
    root = get_dispatcher()
    root.add_event_handler(seen)
    try:
        selector = DataShuntSelector(shunt, MockLLM())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DriftWarning)
            for text in _texts("moved good", 150):
                selector.select(CHOICES, text)
    finally:
        root.event_handlers.remove(seen)
    drift = [e for e in seen._events if isinstance(e, ShuntDriftEvent)]
    assert len(drift) == 1 and "inputs drifted" in drift[0].detail
