"""DataShuntRouter, the callback handlers, the agent middleware and the pinned API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

import langchain_datashunt
from datashunt import CallStore, ConfigError, ShuntPolicy
from langchain_datashunt import (
    AsyncDataShuntCallbackHandler,
    DataShuntCallbackHandler,
    DataShuntMiddleware,
    DataShuntRouter,
    DataShuntRunnable,
)
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat

ROUTES = {"refund": ["refund", "money"], "shipping": ["parcel", "delivery"]}


def _router(llm: Any = None, **kw: Any) -> tuple[DataShuntRouter, list[str]]:
    seen: list[str] = []

    def dest(name: str) -> RunnableLambda[Any, str]:
        return RunnableLambda(lambda x: seen.append(name) or f"{name}: {x['text']}", name=name)

    gate = KeywordGate(ROUTES)
    policy = ShuntPolicy(labels=gate.labels, threshold=0.9)
    destinations = {"refund": dest("refund"), "shipping": dest("shipping")}
    return DataShuntRouter.from_gate(
        gate=gate, policy=policy, destinations=destinations, llm=llm, **kw
    ), seen


def test_router_confident_goes_straight_to_destination() -> None:
    llm = CountingChat()
    router, seen = _router(llm)
    assert router.invoke({"text": "where is my parcel"}) == "shipping: where is my parcel"
    assert seen == ["shipping"] and llm.calls == 0


def test_router_asks_model_among_candidates_when_unsure() -> None:
    llm = CountingChat(answer=lambda p: "refund")
    router, seen = _router(llm)
    assert router.invoke({"text": "I am unhappy"}) == "refund: I am unhappy"
    assert "Options: refund, shipping." in llm.prompts[0] and "smaller model" in llm.prompts[0]


def test_router_unparseable_model_answer_falls_back_to_gate() -> None:
    router, seen = _router(CountingChat(answer=lambda p: "no clue"))
    router.invoke({"text": "hello"})
    assert seen == ["refund"]  # the gate's top label (a 50/50 tie resolves to the first)


def test_router_without_model_always_uses_gate() -> None:
    router, seen = _router(None)
    router.invoke({"text": "hello"})
    assert seen == ["refund"]


def test_router_batch_async_and_stream() -> None:
    import asyncio

    gate_router, seen = _router(CountingChat(answer=lambda p: "shipping"))
    outs = gate_router.batch([{"text": "money back"}, {"text": "??"}, {"text": "delivery late"}])
    assert outs == ["refund: money back", "shipping: ??", "shipping: delivery late"]
    assert gate_router.shunt.gate.calls == 1  # one gate pass for the batch
    aouts = asyncio.run(gate_router.abatch([{"text": "refund"}, {"text": "??"}]))
    assert aouts == ["refund: refund", "shipping: ??"]
    assert list(gate_router.stream({"text": "parcel"})) == ["shipping: parcel"]


def test_router_validates_destinations() -> None:
    gate = KeywordGate(ROUTES)
    with pytest.raises(ConfigError, match="have no destination"):
        DataShuntRouter.from_gate(gate=gate, destinations={"refund": RunnableLambda(str)})
    mapped = DataShuntRouter.from_gate(
        gate=gate,
        destinations={"a": RunnableLambda(lambda x: "A"), "b": RunnableLambda(lambda x: "B")},
        label_to_destination={"refund": "a", "shipping": "b"},
    )
    assert mapped.invoke({"text": "parcel"}) == "B"


def test_router_destination_error_with_return_exceptions() -> None:
    gate = KeywordGate(ROUTES)

    def boom(x: Any) -> str:
        raise RuntimeError("destination down")

    router = DataShuntRouter.from_gate(
        gate=gate, destinations={"refund": RunnableLambda(boom), "shipping": RunnableLambda(str)}
    )
    out = router.batch([{"text": "refund"}, {"text": "parcel"}], return_exceptions=True)
    assert isinstance(out[0], RuntimeError) and isinstance(out[1], str)
    with pytest.raises(RuntimeError, match="destination down"):
        router.invoke({"text": "refund"})


LP = [
    {
        "token": "negative",
        "logprob": math.log(0.7),
        "top_logprobs": [
            {"token": "negative", "logprob": math.log(0.7)},
            {"token": "positive", "logprob": math.log(0.3)},
        ],
    }
]


def test_callback_handler_records_each_call_once(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    handler = DataShuntCallbackHandler(store, labels=["negative", "positive"])
    llm = CountingChat(answer=lambda p: "negative", logprobs=LP, callbacks=[handler])
    llm.invoke("classify: meh")
    rec = next(store.iter())
    assert rec.response == "negative" and rec.parsed_label == "negative" and rec.parse_ok
    assert rec.llm_confidence == pytest.approx(0.7) and rec.model == "counting-fake"
    # what the model received: one user message; ``prompt`` is its text (types.messages_text)
    assert rec.input_text == "classify: meh" and rec.prompt == "classify: meh"
    assert rec.messages == [{"role": "user", "content": "classify: meh"}]
    # a shunt that records itself marks its calls: the handler skips them
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=("negative", "positive")),
        llm=llm,
        store=store,
    )
    shunt.invoke("so so")
    assert store.count(route="llm") == 2  # one by the handler, one by the shunt


def test_callback_handler_records_errors_and_shunt_metadata(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    handler = DataShuntCallbackHandler(store)
    llm = CountingChat(answer=lambda p: TimeoutError("read timeout"))
    shunt = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=("negative", "positive")), llm=llm
    )
    out = shunt.invoke("so so", config={"callbacks": [handler]})
    assert out.source == "fallback"
    rec = next(store.iter())
    assert rec.error == "TimeoutError: read timeout" and rec.gate_label == "negative"
    assert rec.gate_confidence == pytest.approx(0.5) and rec.candidates == ["negative", "positive"]


async def test_async_callback_handler(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    handler = AsyncDataShuntCallbackHandler(store, labels=["negative", "positive"])
    llm = CountingChat(answer=lambda p: "positive", callbacks=[handler])
    await llm.abatch(["a", "b", "c"])
    assert store.count() == 3 and {r.parsed_label for r in store.iter()} == {"positive"}


def _agent(llm: Any, mw: Any) -> Any:
    from langchain.agents import create_agent

    return create_agent(model=llm, tools=[], middleware=[mw], system_prompt="Be brief.")


def test_middleware_answers_confident_turns_without_the_model(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = CountingChat(answer=lambda p: "negative")
    mw = DataShuntMiddleware.from_gate(
        KeywordGate(), ShuntPolicy(labels=("negative", "positive")), store=store
    )
    agent = _agent(llm, mw)
    out = agent.invoke({"messages": [{"role": "user", "content": "a great buy"}]})
    assert out["messages"][-1].content == "positive" and llm.calls == 0
    out = agent.invoke({"messages": [{"role": "user", "content": "it came"}]})
    assert out["messages"][-1].content == "negative" and llm.calls == 1
    sent = llm.prompts[0]
    assert sent.startswith("Be brief.") and "exactly one of these labels" in sent
    assert store.count(route="llm") == 1 and store.count(route="small") == 1


async def test_middleware_async() -> None:
    llm = CountingChat(answer=lambda p: "negative")
    mw = DataShuntMiddleware.from_gate(KeywordGate(), ShuntPolicy(labels=("negative", "positive")))
    agent = _agent(llm, mw)
    out = await agent.ainvoke({"messages": [{"role": "user", "content": "awful"}]})
    assert out["messages"][-1].content == "negative" and llm.calls == 0
    out = await agent.ainvoke({"messages": [{"role": "user", "content": "hmm"}]})
    assert llm.calls == 1


def test_langchain_api_is_pinned() -> None:
    assert set(langchain_datashunt.__all__) == {
        "DECISION_EVENT",
        "DRIFT_EVENT",
        "RECEIPT_EVENT",
        "AsyncDataShuntCallbackHandler",
        "DataShuntCallbackHandler",
        "DataShuntChatModel",
        "DataShuntMiddleware",
        "DataShuntRouter",
        "DataShuntRunnable",
        "ShuntOutput",
    }
    for name in langchain_datashunt.__all__:
        assert getattr(langchain_datashunt, name) is not None
