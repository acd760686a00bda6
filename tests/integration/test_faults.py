"""Faults between the shunt and a real LLM: a fault-injecting proxy on 127.0.0.1 in front of
the local LLM server answers 429 (with and without Retry-After), 500, garbage, empty answers,
dropped connections, timeouts and hanging streams by schedule. Every input gets a result or a
clear error, every call is recorded with its attempts, and none is silently dropped."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from bench.faultproxy import FaultProxy
from datashunt import CallStore, LLMError, Shunt, ShuntPolicy, ShuntResult
from datashunt.llm import RetryPolicy
from datashunt.llm.client import OpenAICompatLLM
from datashunt.llm.server import LLMServer
from langchain_datashunt import DataShuntRunnable
from tests.conftest import KeywordGate

pytestmark = pytest.mark.llm_server
LABELS = ("negative", "positive")
RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)
UNSURE = "Review: It arrived on a Tuesday in a brown box."


@pytest.fixture
def proxy(live_server: LLMServer) -> Iterator[FaultProxy]:
    with FaultProxy(live_server.base_url) as p:
        yield p


def _core(proxy: FaultProxy, store: CallStore | None = None, **kw: Any) -> Shunt:
    llm = OpenAICompatLLM(proxy.base_url, "smollm2", max_tokens=5, timeout=kw.pop("timeout", 30))
    return Shunt(KeywordGate(), ShuntPolicy(labels=LABELS), llm=llm, store=store, retry=RETRY, **kw)


@pytest.mark.parametrize(
    ("faults", "at_least_s"),
    [
        (["429:0.3", "500", "pass"], 0.3),  # Retry-After honoured, then backoff
        (["429", "pass"], 0.0),  # no Retry-After: backoff
        (["garbage", "empty", "pass"], 0.0),
        (["drop", "pass"], 0.0),
        (["timeout:10", "pass"], 3.0),  # the client's 3 s timeout fires, the retry answers
    ],
)
def test_core_retries_through_faults(
    proxy: FaultProxy, tmp_path: Path, faults: list[str], at_least_s: float
) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    proxy.push(*faults)
    t0 = time.perf_counter()
    res = _core(proxy, store, timeout=3).run(UNSURE)
    elapsed = time.perf_counter() - t0
    assert proxy.log == faults and res.attempts == len(faults)
    assert res.error is None and res.reply is not None and res.label in LABELS
    assert at_least_s <= elapsed < 10
    rec = next(store.iter())
    assert rec.extra == {"attempts": len(faults)} and rec.response == res.reply.text


def test_core_gives_up_then_falls_back_or_raises(proxy: FaultProxy, tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    proxy.push("500", "503", "500")
    res = _core(proxy, store).run(UNSURE)
    assert res.source == "fallback" and res.label in LABELS and res.attempts == 3
    assert res.error is not None and "HTTP 500" in res.error
    proxy.push("429:0", "429:0", "429:0")
    with pytest.raises(LLMError, match="after 3 attempts: LLMError: HTTP 429") as info:
        _core(proxy, store, on_llm_error="raise").run(UNSURE)
    assert info.value.status == 429
    proxy.push("400")  # a client error: not retried
    assert _core(proxy, store).run(UNSURE).attempts == 1
    recs = list(store.iter())
    assert [r.extra for r in recs] == [{"attempts": 3}, {"attempts": 3}, {"attempts": 1}]
    assert all(r.error for r in recs) and proxy.requests == 7


def test_core_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = CallStore(tmp_path / "c.sqlite")
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    res = Shunt(KeywordGate(), llm=llm, store=store, retry=RETRY).run(UNSURE)
    assert res.source == "fallback" and res.attempts == 3 and "could not reach" in (res.error or "")
    assert next(store.iter()).error == res.error


async def test_core_async_batch_under_random_faults(proxy: FaultProxy, tmp_path: Path) -> None:
    rng = random.Random(8)
    kinds = ["429:0.1", "500", "drop", "garbage", "empty", "429"]
    proxy.push(*[rng.choice(kinds + ["pass"] * 3) for _ in range(30)])
    store = CallStore(tmp_path / "c.sqlite")
    shunt = _core(proxy, store, max_concurrency=3)
    texts = [f"Review: item {i} came in a box." for i in range(10)] + ["good", "awful"]
    results = await shunt.arun_batch(texts)
    assert len(results) == 12 and all(isinstance(r, ShuntResult) for r in results)
    assert all(r.label in LABELS for r in results)  # type: ignore[union-attr]
    llm_results = [r for r in results if r.route == "llm"]  # type: ignore[union-attr]
    assert len(llm_results) == 10 and store.count(route="llm") == 10 and store.count() == 12
    # every request the proxy saw is an attempt counted in a result and its record
    assert sum(r.attempts for r in llm_results) == proxy.requests  # type: ignore[union-attr]
    assert sum(r.extra["attempts"] for r in store.iter(route="llm")) == proxy.requests  # type: ignore[index]


# ---- LangChain: ChatOpenAI through the proxy ---------------------------------------------------


def _chat(server: LLMServer, proxy: FaultProxy, timeout: float = 30) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=proxy.base_url,
        api_key="local",  # type: ignore[arg-type]
        model=server.model_name,
        temperature=0,
        max_tokens=5,
        max_retries=0,  # the shunt's policy retries, and counts
        timeout=timeout,
    )


def _runnable(server: LLMServer, proxy: FaultProxy, **kw: Any) -> DataShuntRunnable:
    return DataShuntRunnable.from_gate(
        gate=KeywordGate(),
        policy=ShuntPolicy(labels=LABELS),
        llm=_chat(server, proxy, kw.pop("timeout", 30)),
        retry=RETRY,
        **kw,
    )


async def test_runnable_sync_and_async_retry(
    live_server: LLMServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    runnable = _runnable(live_server, proxy, store=store, timeout=3)
    proxy.push("429:0.2", "503", "pass")
    out = runnable.invoke(UNSURE)
    assert out.attempts == 3 and out.error is None and out.label in LABELS
    proxy.push("timeout:10", "garbage", "pass")
    out = await runnable.ainvoke(UNSURE)
    assert out.attempts == 3 and out.error is None
    proxy.push("500", "500", "500")
    out = await runnable.ainvoke(UNSURE)
    assert out.source == "fallback" and out.attempts == 3 and "500" in (out.error or "")
    recs = list(store.iter())
    assert [r.extra for r in recs] == [{"attempts": 3}] * 3 and proxy.requests == 9


async def test_runnable_hanging_streams(live_server: LLMServer, proxy: FaultProxy) -> None:
    runnable = _runnable(live_server, proxy, stream_idle_timeout=1.0)
    proxy.push("hang", "pass")  # nothing sent yet: retried
    t0 = time.perf_counter()
    chunks = [c async for c in runnable.astream(UNSURE)]
    assert time.perf_counter() - t0 < 10  # the 30 s client timeout never came into it
    assert chunks[-1].attempts == 2 and chunks[-1].error is None
    proxy.push("hang")
    chunks = list(runnable.stream(UNSURE))
    assert chunks[-1].attempts == 2 and chunks[-1].error is None
    proxy.push("hang-mid")  # a token already reached the caller: not retried, falls back
    chunks = [c async for c in runnable.astream(UNSURE)]
    final = chunks[-1]
    assert final.source == "fallback" and final.attempts == 1 and final.label in LABELS
    assert "stream_idle_timeout" in (final.error or "")
