"""DataShuntRunnable, the router and the callback handler against the real local LLM server,
reached through langchain-openai's ChatOpenAI exactly as a hosted model would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from datashunt import CallStore, ShuntPolicy
from datashunt.llm.server import LLMServer
from langchain_datashunt import DataShuntCallbackHandler, DataShuntRouter, DataShuntRunnable
from tests.conftest import KeywordGate

pytestmark = pytest.mark.llm_server
LABELS = ("negative", "positive")
UNSURE = [
    "Review: The plot was dull and the ending made no sense. I want my money back.",
    "Review: Wonderful blender, makes smoothies in seconds and cleans easily.",
    "Review: It stopped working after two days and support never answered.",
    "Review: My kids love this book, we read it every night.",
]


def _chat(server: LLMServer, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="local",  # type: ignore[arg-type]
        model=server.model_name,
        temperature=0,
        max_tokens=5,
        logprobs=True,
        top_logprobs=5,
        timeout=120,
        **kw,
    )


def test_runnable_batch_records_real_answers(live_server: LLMServer, tmp_path: Path) -> None:
    store = CallStore(tmp_path / "calls.sqlite")
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=_chat(live_server), store=store
    )
    outs = shunt.batch([*UNSURE, "a great great thing"], config={"max_concurrency": 2})
    assert [o.route for o in outs] == ["llm"] * 4 + ["small"]
    assert all(o.label in LABELS for o in outs)
    recs = list(store.iter(route="llm"))
    assert len(recs) == 4
    assert all(r.response and r.model and r.prompt_tokens for r in recs)
    parsed = [r for r in recs if r.parse_ok]
    # the model is weak, but it answers with a label at least sometimes, and then C_l is real
    assert parsed, [r.response for r in recs]
    assert all(r.llm_confidence is not None and 0 < r.llm_confidence <= 1 for r in parsed)


async def test_runnable_async_and_stream(live_server: LLMServer) -> None:
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=_chat(live_server)
    )
    outs = await shunt.abatch(UNSURE[:2])
    assert all(o.route == "llm" and o.message is not None for o in outs)
    chunks = [c async for c in shunt.astream(UNSURE[2])]
    tokens = [c for c in chunks if c.message is not None and str(c.message.text)]
    assert tokens, "the model's tokens should stream through"
    assert chunks[-1].label in LABELS


def test_callback_handler_on_chat_openai(live_server: LLMServer, tmp_path: Path) -> None:
    store = CallStore(tmp_path / "cb.sqlite")
    handler = DataShuntCallbackHandler(store, labels=LABELS)
    llm = _chat(live_server, callbacks=[handler])
    llm.invoke(
        "Is this review positive or negative? 'Terrible, broke at once.' Answer in one word."
    )
    rec = next(store.iter())
    assert rec.response and rec.model and rec.completion_tokens


def test_router_with_real_model(live_server: LLMServer) -> None:
    gate = KeywordGate({"refund": ["refund"], "shipping": ["parcel"]})
    router = DataShuntRouter.from_gate(
        gate=gate,
        policy=ShuntPolicy(labels=gate.labels),
        llm=_chat(live_server),
        destinations={
            "refund": RunnableLambda(lambda x: "refund desk"),
            "shipping": RunnableLambda(lambda x: "shipping desk"),
        },
    )
    assert router.invoke({"text": "I want a refund"}) == "refund desk"
    assert router.invoke({"text": "My order has not arrived yet."}) in (
        "refund desk",
        "shipping desk",
    )
