"""The store records exactly the messages the chat model received, on every LangChain path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from datashunt import CallRecord, CallStore, InputError, RetryPolicy, ShuntPolicy
from langchain_datashunt import DataShuntRouter, DataShuntRunnable
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat

LABELS = ("negative", "positive")
ROLE = {"human": "user", "ai": "assistant", "system": "system"}
# A template that differs from the core's default in every way: two messages, its own words.
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You sort product reviews. Allowed: {candidates}. {hint}"),
        ("human", "Shop {shop} review: «{text}»\nOne word:"),
    ]
)
UNSURE = ["it came on a tuesday", "the box was brown", "ordered it in may"]


def _wire(messages: list[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": ROLE[m.type], "content": str(m.text)} for m in messages]


def _check(store: CallStore, llm: CountingChat, n: int) -> None:
    """Every LLM record holds exactly one call's messages, and every call has its record."""
    recs: list[CallRecord] = [r for r in store.iter() if r.route == "llm"]
    assert len(recs) == n == llm.calls
    sent = [_wire(m) for m in llm.received]
    for rec in recs:
        assert rec.messages in sent, rec.messages
        assert rec.input_text is not None and rec.input_text in str(rec.messages)
        assert rec.prompt is not None and rec.prompt.startswith("system: You sort product")
        assert rec.model == "counting-fake"
    assert sorted(map(str, sent)) == sorted(str(r.messages) for r in recs)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[DataShuntRunnable, CountingChat, CallStore]:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=LABELS),
        llm=llm,
        prompt=PROMPT,
        store=store,
        record_small=False,
    )
    return shunt, llm, store


def _inputs() -> list[dict[str, Any]]:
    return [{"text": t, "shop": "Ace"} for t in UNSURE]


def test_invoke_and_batch(parts: tuple[DataShuntRunnable, CountingChat, CallStore]) -> None:
    shunt, llm, store = parts
    assert shunt.invoke(_inputs()[0]).source == "llm"
    shunt.batch(_inputs()[1:])
    _check(store, llm, 3)


async def test_ainvoke_and_abatch(parts: tuple[DataShuntRunnable, CountingChat, CallStore]) -> None:
    shunt, llm, store = parts
    await shunt.ainvoke(_inputs()[0])
    await shunt.abatch(_inputs()[1:])
    _check(store, llm, 3)


def test_stream(parts: tuple[DataShuntRunnable, CountingChat, CallStore]) -> None:
    shunt, llm, store = parts
    for item in _inputs():
        chunks: Iterator[Any] = shunt.stream(item)
        assert [c for c in chunks][-1].label == "negative"
    _check(store, llm, 3)


async def test_astream(parts: tuple[DataShuntRunnable, CountingChat, CallStore]) -> None:
    shunt, llm, store = parts
    for item in _inputs():
        chunks: AsyncIterator[Any] = shunt.astream(item)
        assert [c async for c in chunks][-1].label == "negative"
    _check(store, llm, 3)


def test_router_records_what_the_chooser_model_received(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    router = DataShuntRouter.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=LABELS),
        llm=llm,
        destinations={lab: RunnableLambda(lambda x, lab=lab: lab) for lab in LABELS},
        store=store,
        structured_output=False,
    )
    assert router.invoke({"text": UNSURE[0]}) == "negative"
    recs = [r for r in store.iter() if r.route == "llm"]
    assert len(recs) == 1 == llm.calls
    assert recs[0].messages == _wire(llm.received[0])
    assert recs[0].messages[0]["content"].startswith("Choose where this input should go.")


def test_middleware_records_the_agent_messages(tmp_path: Path) -> None:
    from langchain.agents import create_agent

    from langchain_datashunt import DataShuntMiddleware

    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    mw = DataShuntMiddleware.from_gate(KeywordGate(), ShuntPolicy(labels=LABELS), store=store)
    agent = create_agent(model=llm, tools=[], middleware=[mw], system_prompt="Be brief.")
    agent.invoke({"messages": [{"role": "user", "content": UNSURE[0]}]})
    recs = [r for r in store.iter() if r.route == "llm"]
    assert len(recs) == 1 == llm.calls
    assert recs[0].messages == _wire(llm.received[0])
    assert recs[0].messages[0]["role"] == "system"
    assert recs[0].messages[0]["content"].startswith("Be brief.\n\nAnswer with exactly one")
    assert recs[0].model == "counting-fake" and recs[0].source == "llm"


def test_batch_validates_every_input_before_any_paid_call(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=llm, store=store
    )
    with pytest.raises(InputError, match="input 2 is empty"):
        shunt.batch([UNSURE[0], UNSURE[1], "  ", "a great buy"])
    with pytest.raises(InputError, match="input 1 is an int, which cannot be classified"):
        shunt.batch([UNSURE[0], 7])
    assert llm.calls == 0 and store.count() == 0
    # with return_exceptions the valid inputs are still answered, the bad one named
    outs = shunt.batch([UNSURE[0], "", "a great buy"], return_exceptions=True)
    assert isinstance(outs[1], InputError) and "input 1" in str(outs[1])
    assert [o.label for o in (outs[0], outs[2])] == ["negative", "positive"]  # type: ignore[union-attr]
    assert llm.calls == 1


async def test_failed_calls_record_the_configured_model(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: TimeoutError("read timeout"), model_name="gpt-x")
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=LABELS),
        llm=llm,
        store=store,
        retry=RetryPolicy.none(),
    )
    shunt.invoke(UNSURE[0])
    await shunt.ainvoke(UNSURE[1])
    _ = [c for c in shunt.stream(UNSURE[2])]
    recs = list(store.iter(route="llm"))
    assert len(recs) == 3 and {r.model for r in recs} == {"gpt-x"}
    assert all(r.error == "TimeoutError: read timeout" for r in recs)


async def test_router_batch_validates_every_input_before_any_call(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    seen: list[Any] = []
    router = DataShuntRouter.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=LABELS),
        llm=llm,
        destinations={
            lab: RunnableLambda(lambda x, lab=lab: seen.append(x) or lab) for lab in LABELS
        },
        store=store,
        structured_output=False,
    )
    with pytest.raises(InputError, match="input 1 is empty"):
        router.batch([{"text": UNSURE[0]}, {"text": " "}])
    with pytest.raises(InputError, match="input 1 is empty"):
        await router.abatch([{"text": UNSURE[0]}, {"text": ""}])
    assert llm.calls == 0 and store.count() == 0 and seen == []
