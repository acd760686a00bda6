"""The store records exactly the messages the LLM received, for each LlamaIndex component."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools.types import ToolMetadata

from datashunt import CallRecord, CallStore, Shunt, ShuntPolicy
from llamaindex_datashunt import DataShuntLLM, DataShuntSelector, DataShuntWorkflow
from tests.support.llamaindex_fakes import (  # noqa: F401 - fixtures
    ScriptedLLM,
    llamaindex_sandbox,
    sentiment_gate,
    temp_store,
    topic_shunt,
)

UNSURE = "it came on a tuesday"
CHOICES = [
    ToolMetadata(name="sports", description="Scores, matches and players."),
    ToolMetadata(name="weather", description="Forecasts and climate."),
    ToolMetadata(name="finance", description="Markets and banks."),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


def _wire(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role.value, "content": m.content or ""} for m in messages]


def _llm_records(store: CallStore) -> list[CallRecord]:
    return [r for r in store.iter() if r.route == "llm"]


def _sentiment_shunt(store: CallStore) -> Shunt:
    gate = sentiment_gate()
    return Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=0.9), store=store)


async def test_shunting_llm_chat_records_the_injected_messages(store: CallStore) -> None:
    inner = ScriptedLLM(answer="negative")
    llm = DataShuntLLM(inner, _sentiment_shunt(store))
    msgs = [
        ChatMessage(role=MessageRole.SYSTEM, content="You are terse."),
        ChatMessage(role=MessageRole.USER, content=UNSURE),
    ]
    llm.chat(msgs)
    await llm.achat(msgs)
    recs = _llm_records(store)
    assert len(recs) == 2 == len(inner.messages)
    for rec, sent in zip(recs, inner.messages, strict=True):
        assert rec.messages == _wire(sent)
        assert sent[0].content is not None and sent[0].content.startswith("You are terse.\n\n")
        assert rec.model == "scripted-1"


def test_shunting_llm_complete_records_the_sent_prompt(store: CallStore) -> None:
    inner = ScriptedLLM(answer="negative", chat_model=False)
    DataShuntLLM(inner, _sentiment_shunt(store)).complete(UNSURE)
    (rec,) = _llm_records(store)
    assert rec.messages == [{"role": "user", "content": inner.prompts[0]}]
    assert rec.prompt == inner.prompts[0] and inner.prompts[0].endswith(f"\n\n{UNSURE}")


def test_selector_records_the_selector_prompt(store: CallStore) -> None:
    inner = ScriptedLLM(answer="2")
    DataShuntSelector(topic_shunt(store), inner).select(CHOICES, "tomorrow?")
    (rec,) = _llm_records(store)
    assert rec.messages == _wire(inner.messages[0])
    assert "(2) weather: Forecasts and climate." in rec.messages[0]["content"]


async def test_workflow_records_the_shunt_prompt(store: CallStore) -> None:
    inner = ScriptedLLM(answer="negative")
    shunt = _sentiment_shunt(store)
    result = await DataShuntWorkflow(shunt=shunt, llm=inner).run(text=UNSURE)
    assert result.source == "llm"
    (rec,) = _llm_records(store)
    assert rec.messages == _wire(inner.messages[0])
    assert rec.messages == [
        {"role": "user", "content": shunt.prepare([UNSURE], shunt.decide([UNSURE]))[0].prompt}
    ]
