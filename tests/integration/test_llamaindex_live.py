"""The LlamaIndex adapters against the real local LLM server (SmolLM2-135M, real logprobs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.query_engine import CustomQueryEngine, RouterQueryEngine
from llama_index.core.tools import QueryEngineTool

from datashunt import CallRecord, CallStore, Shunt, ShuntPolicy
from datashunt.llm.server import LLMServer
from llamaindex_datashunt import (
    DataShuntEventHandler,
    DataShuntLLM,
    DataShuntSelector,
    DataShuntWorkflow,
    OpenAILikeLLM,
    ShuntProgressEvent,
)
from tests.conftest import KeywordGate
from tests.support.llamaindex_fakes import llamaindex_sandbox, temp_store  # noqa: F401

pytestmark = pytest.mark.llm_server

LABELS = ("negative", "positive")
UNSURE = "The parcel arrived on Tuesday and I opened it at once."  # no keyword: gate at 0.5
# A classification-style chat turn, as DataShuntLLM expects (SmolLM2 echoes a bare review).
QUESTION = f"Review: {UNSURE}\nIs this review positive or negative?"


@pytest.fixture
def server(live_server: LLMServer) -> LLMServer:
    return live_server  # the session's one server (tests/integration/conftest.py)


@pytest.fixture
def llm(server: LLMServer) -> OpenAILikeLLM:
    return OpenAILikeLLM(
        model=server.model_name,
        api_base=server.base_url,
        logprobs=True,
        top_logprobs=5,
        max_tokens=8,
        timeout=120,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


def _shunt(store: CallStore, mode: str = "both") -> Shunt:
    gate = KeywordGate()
    return Shunt(gate, ShuntPolicy(labels=LABELS, threshold=0.9), store=store, prompt_mode=mode)  # type: ignore[arg-type]


def _llm_records(store: CallStore) -> list[CallRecord]:
    return [r for r in store.iter() if r.route == "llm"]


def _check_llm_record(rec: CallRecord) -> None:
    assert rec.response is not None and rec.error is None
    assert rec.model  # reported by the server
    assert rec.prompt_tokens and rec.completion_tokens
    if rec.parse_ok:
        # The server returns top_logprobs: C_l comes from them, not from nothing.
        assert rec.llm_confidence is not None and 0.0 < rec.llm_confidence <= 1.0
        assert rec.llm_probs is not None and set(rec.llm_probs) <= set(LABELS)


def test_datashunt_llm_live(llm: OpenAILikeLLM, store: CallStore) -> None:
    shunted = DataShuntLLM(llm, _shunt(store))
    assert shunted.complete("A great, sturdy blender.").text == "positive"  # gate alone
    resp = shunted.chat([ChatMessage(role=MessageRole.USER, content=QUESTION)])
    assert resp.message.content in LABELS
    assert resp.raw.route == "llm"
    (rec,) = _llm_records(store)
    _check_llm_record(rec)
    assert rec.input_text == QUESTION and rec.prompt and rec.prompt.startswith("system: Classify")
    assert store.count() == 2


async def test_datashunt_llm_live_async_stream(llm: OpenAILikeLLM, store: CallStore) -> None:
    shunted = DataShuntLLM(llm, _shunt(store))
    msgs = [ChatMessage(role=MessageRole.USER, content=QUESTION)]
    chunks = [c async for c in await shunted.astream_chat(msgs)]
    assert "".join(c.delta or "" for c in chunks) in LABELS
    (rec,) = _llm_records(store)
    _check_llm_record(rec)


async def test_workflow_live(llm: OpenAILikeLLM, store: CallStore) -> None:
    wf = DataShuntWorkflow(_shunt(store), llm, timeout=120)
    handler = wf.run(text=UNSURE)
    stages = [e.stage async for e in handler.stream_events() if isinstance(e, ShuntProgressEvent)]
    result = await handler
    assert stages == ["classified", "asking_llm", "llm_answered"]
    assert result.label in LABELS and result.route == "llm"
    (rec,) = _llm_records(store)
    _check_llm_record(rec)
    assert rec.run_id == handler.run_id
    # The shunt's own prompt gets a bare label from SmolLM2, and C_l from its logprobs.
    assert result.source == "llm", f"SmolLM2 answered {rec.response!r}"
    assert result.llm_confidence is not None and 0.0 < result.llm_confidence <= 1.0
    assert result.llm_confidence == pytest.approx(rec.llm_confidence)


class Echo(CustomQueryEngine):
    name: str

    def custom_query(self, query_str: str) -> str:
        return f"{self.name} desk"


async def test_selector_live_in_a_router(llm: OpenAILikeLLM, store: CallStore) -> None:
    tools = [
        QueryEngineTool.from_defaults(
            Echo(name=lab), name=lab, description=f"Handles {lab} customer feedback."
        )
        for lab in LABELS
    ]
    selector = DataShuntSelector(_shunt(store), llm)
    router = RouterQueryEngine(selector, tools, llm=llm)
    assert str(router.query("This is awful, it broke.")) == "negative desk"  # gate alone
    assert str(router.query(UNSURE)) in {"negative desk", "positive desk"}
    picked = await selector.aselect([t.metadata for t in tools], UNSURE)
    assert picked.label in LABELS and picked.ind == LABELS.index(picked.label)
    records = _llm_records(store)
    assert len(records) == 2
    for rec in records:
        _check_llm_record(rec)
        assert rec.prompt is not None and "Options:" in rec.prompt


def test_event_handler_live(llm: OpenAILikeLLM, store: CallStore) -> None:
    with DataShuntEventHandler(store) as h:
        out = llm.complete("Say hello in one word.")
        shunted = DataShuntLLM(llm, _shunt(store))
        shunted.chat(
            [ChatMessage(role=MessageRole.USER, content=QUESTION)]
        )  # recorded by the shunt, not observed a second time
        h.flush()
    observed = [r for r in store.iter() if r.source == "observed"]
    assert len(observed) == 1 and observed[0].response == out.text
    assert observed[0].prompt_tokens and observed[0].model
    assert len(_llm_records(store)) == 2
