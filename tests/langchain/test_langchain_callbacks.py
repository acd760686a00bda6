"""The callback handlers record exactly the messages the chat model received, on every path."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from datashunt import CallStore, ShuntPolicy
from langchain_datashunt import (
    AsyncDataShuntCallbackHandler,
    DataShuntCallbackHandler,
    DataShuntRunnable,
)
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat

ROLE = {"human": "user", "ai": "assistant", "system": "system"}
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Sort reviews of {shop}. One word."),
        MessagesPlaceholder("history"),
        ("human", "Review: «{text}»"),
    ]
)
HISTORY = [("human", "Review: «fine»"), AIMessage("positive")]


def _wire(messages: list[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": ROLE[m.type], "content": str(m.text)} for m in messages]


def _inputs(n: int) -> list[dict[str, object]]:
    return [
        {"shop": "Ünïcode, {braces}", "history": HISTORY, "text": f"so so {i}"} for i in range(n)
    ]


def _check(store: CallStore, llm: CountingChat, n: int) -> None:
    recs = list(store.iter())
    sent = [_wire(m) for m in llm.received]
    assert len(recs) == n == len(sent)
    assert sorted(map(str, sent)) == sorted(str(r.messages) for r in recs)
    for rec in recs:
        assert rec.messages is not None and len(rec.messages) == 4
        assert rec.prompt == "\n".join(f"{m['role']}: {m['content']}" for m in rec.messages)
        # invoke and batch: the chain's {text} variable, not the templated prompt around it; a
        # stream's chain sees its input only at its end: the last user message stands in
        streamed = rec.input_text == "Review: «so so 3»"
        text = "so so 3" if streamed else rec.input_text
        assert rec.messages[-1]["content"] == f"Review: «{text}»"
        assert rec.response == "negative" and rec.parsed_label == "negative"


def test_sync_invoke_batch_stream(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    handler = DataShuntCallbackHandler(store, labels=["negative", "positive"])
    llm = CountingChat(answer=lambda p: "negative")
    chain = PROMPT | llm
    config = {"callbacks": [handler]}
    one, two, three, four = _inputs(4)
    chain.invoke(one, config)  # type: ignore[arg-type]
    chain.batch([two, three], config)  # type: ignore[arg-type]
    assert "".join(str(c.content) for c in chain.stream(four, config)) == "negative"  # type: ignore[arg-type]
    _check(store, llm, 4)
    assert handler.store is store


async def test_async_invoke_batch_stream(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    handler = AsyncDataShuntCallbackHandler(store, labels=["negative", "positive"])
    llm = CountingChat(answer=lambda p: "negative")
    chain = PROMPT | llm
    config = {"callbacks": [handler]}
    one, two, three, four = _inputs(4)
    await chain.ainvoke(one, config)  # type: ignore[arg-type]
    await chain.abatch([two, three], config)  # type: ignore[arg-type]
    chunks = [str(c.content) async for c in chain.astream(four, config)]  # type: ignore[arg-type]
    assert "".join(chunks) == "negative"
    _check(store, llm, 4)


def test_a_shunts_custom_prompt_is_recorded_as_sent(tmp_path: Path) -> None:
    # the runnable keeps no store of its own: the handler records what its template sent
    store = CallStore(tmp_path / "c.sqlite")
    handler = DataShuntCallbackHandler(store)
    llm = CountingChat(answer=lambda p: "negative")
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Labels: {candidates}."), ("human", "Which? {text}")]
    )
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=("negative", "positive")), llm=llm,
        prompt=prompt,
    )  # fmt: skip
    shunt.invoke("so so", config={"callbacks": [handler]})
    (rec,) = store.iter()
    assert rec.messages == _wire(llm.received[0])
    assert rec.messages[1] == {"role": "user", "content": "Which? so so"}
    assert rec.gate_label == "negative" and rec.candidates == ["negative", "positive"]


def test_a_failed_call_keeps_the_messages_and_the_model(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: TimeoutError("read timeout"))
    with pytest.raises(TimeoutError):
        (PROMPT | llm).invoke(_inputs(1)[0], {"callbacks": [DataShuntCallbackHandler(store)]})
    (rec,) = store.iter()
    assert rec.error == "TimeoutError: read timeout" and rec.model == "counting-fake"
    assert rec.messages == _wire(llm.received[0])


def test_a_plain_chain_records_its_input_text_beside_the_prompt(tmp_path: Path) -> None:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    store = tmp_path / "calls.sqlite"
    handler = DataShuntCallbackHandler(store, labels=["negative", "positive"])
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You classify reviews."),
            ("human", "Review: {text}\nAnswer positive or negative."),
        ]
    )
    chain = prompt | CountingChat(answer=lambda p: "negative") | StrOutputParser()
    chain.invoke({"text": "it broke at once"}, config={"callbacks": [handler]})
    chain.batch([{"text": "fine"}, {"text": "meh"}], config={"callbacks": [handler]})
    recs = sorted(CallStore(store).iter(), key=lambda r: r.input_text or "")
    assert [r.input_text for r in recs] == ["fine", "it broke at once", "meh"]
    assert all("Answer positive or negative" in r.messages[-1]["content"] for r in recs)
    assert {r.parsed_label for r in recs} == {"negative"}
