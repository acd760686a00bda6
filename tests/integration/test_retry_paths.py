"""One retry policy on every path: a 429 with Retry-After, a 503 and a refused connection are
retried and counted the same way through the core client, LangChain and LlamaIndex.

A loopback server (no LLM behind it) fails twice, then answers; each path must make exactly
three calls and return the answer, with ``attempts == 3`` in the result and the record.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from bench.faultproxy import FaultProxy
from datashunt import CallStore, RetryPolicy, Shunt, ShuntPolicy
from datashunt.llm import OpenAICompatLLM
from langchain_datashunt import DataShuntRunnable
from llamaindex_datashunt import DataShuntLLM, OpenAILikeLLM
from tests.conftest import KeywordGate

LABELS = ("negative", "positive")
UNSURE = "it came on a tuesday"
# Waits of 1 s, then 1 s, whatever the server asks: the refused case needs a known schedule.
RETRY = RetryPolicy(attempts=3, base_delay=1.0, max_delay=1.0, jitter=0.0)

Ask = Callable[[str, CallStore], Any]


def _core(url: str, store: CallStore) -> Any:
    llm = OpenAICompatLLM(url, "m", timeout=5)
    shunt = Shunt(KeywordGate(), ShuntPolicy(labels=LABELS), llm=llm, store=store, retry=RETRY)
    res = shunt.run(UNSURE)
    return res.label, res.source, res.attempts


def _langchain(url: str, store: CallStore) -> Any:
    chat = ChatOpenAI(base_url=url, api_key="x", model="m", max_retries=0, timeout=5)  # type: ignore[arg-type]
    runnable = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=chat, store=store, retry=RETRY
    )
    out = runnable.invoke(UNSURE)
    return out.label, out.source, out.attempts


def _llamaindex(url: str, store: CallStore) -> Any:
    inner = OpenAILikeLLM(model="m", api_base=url, timeout=5)
    shunt = Shunt(KeywordGate(), ShuntPolicy(labels=LABELS), store=store, retry=RETRY)
    res = DataShuntLLM(inner, shunt).complete(UNSURE).raw
    return res.label, res.source, res.attempts


PATHS = {"core": _core, "langchain": _langchain, "llamaindex": _llamaindex}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    s = CallStore(tmp_path / "c.sqlite")
    yield s
    s.close()


def _check(store: CallStore, got: Any) -> None:
    assert got == ("negative", "llm", 3)
    (rec,) = [r for r in store.iter() if r.route == "llm"]
    assert rec.source == "llm" and rec.error is None and (rec.extra or {})["attempts"] == 3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("faults", [["429:0", "503"], ["503", "503"]])
def test_status_errors_are_retried_alike(path: str, faults: list[str], store: CallStore) -> None:
    with FaultProxy(None, [*faults, "answer:negative"]) as proxy:
        got = PATHS[path](proxy.base_url, store)
        assert proxy.log == [*faults, "answer:negative"]
    _check(store, got)


@pytest.mark.parametrize("path", PATHS)
def test_refused_connections_are_retried_alike(path: str, store: CallStore) -> None:
    # A bound socket that does not listen refuses connections; after the first two attempts
    # (t = 0 s and 1 s) it is replaced by a server on the same port, which answers the third
    # (t = 2 s).
    placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    placeholder.bind(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    started: list[FaultProxy] = []

    def come_up() -> None:
        time.sleep(1.5)
        placeholder.close()
        started.append(FaultProxy(None, ["answer:negative"], port=port).start())

    riser = threading.Thread(target=come_up)
    riser.start()
    try:
        got = PATHS[path](url, store)
    finally:
        riser.join()
        for proxy in started:
            proxy.stop()
    assert started and started[0].log == ["answer:negative"]
    _check(store, got)
