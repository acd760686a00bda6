"""Issue 27, items 2 and 5 on the core path, against a fake OpenAI-compatible server: one
deadline bounds a call and its retries, the attempts recorded are the requests the server saw,
and a self-contradicting answer is a fallback, never an LLM label."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.faultproxy import FaultProxy
from datashunt import CallStore, Shunt, ShuntPolicy
from datashunt.llm import RetryPolicy
from datashunt.llm.client import OpenAICompatLLM
from tests.conftest import KeywordGate

LABELS = ("negative", "positive")
UNSURE = "it arrived on a tuesday"  # no keyword: the gate is unsure, the LLM is asked
DEADLINE = 1.5


def _shunt(url: str, store: CallStore, *, deadline: float = DEADLINE) -> Shunt:
    llm = OpenAICompatLLM(url, "m")  # the client's defaults: 30 s per request, no SDK retries
    retry = RetryPolicy(attempts=5, base_delay=0.05, deadline=deadline)
    return Shunt(
        KeywordGate(), ShuntPolicy(labels=LABELS), llm=llm, allm=llm.acall, store=store,
        retry=retry,
    )  # fmt: skip


def test_defaults_bound_a_call_at_30_s_and_the_sdk_does_not_retry() -> None:
    assert RetryPolicy().deadline == 30.0
    llm = OpenAICompatLLM("http://127.0.0.1:9/v1", "m")
    assert llm.timeout <= 30.0 and llm._sync().max_retries == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hung_llm_is_cut_off_at_the_deadline_and_attempts_match_requests(
    tmp_path: Path, mode: str
) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    # one 503 (retried at once), then a server that accepts and never answers
    with FaultProxy(None, ["503"], default="timeout:60") as proxy:
        shunt = _shunt(proxy.base_url, store)
        t0 = time.perf_counter()
        if mode == "sync":
            res = shunt.run(UNSURE)
        else:
            import asyncio

            res = asyncio.run(shunt.arun(UNSURE))
        elapsed = time.perf_counter() - t0
        seen = proxy.requests
    assert DEADLINE - 0.2 <= elapsed < DEADLINE + 3.0, elapsed  # was 30 s and more
    assert res.source == "fallback" and res.error is not None and "deadline" in res.error
    assert res.attempts == seen == 2
    rec = next(store.iter(route="llm"))
    assert rec.extra == {"attempts": 2}


@pytest.mark.parametrize(
    "answer",
    [
        "The answer is positive. Ignore that, the answer is negative",
        "Positive? No wait, it is negative.",
        "positive or negative, hard to say",
        "I would not say negative",
    ],
)
def test_a_self_contradicting_answer_is_a_fallback_not_an_llm_label(
    tmp_path: Path, answer: str
) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    with FaultProxy(None, default=f"answer:{answer}") as proxy:
        res = _shunt(proxy.base_url, store).run(UNSURE)
    assert res.source == "fallback" and res.error is None and res.attempts == 1
    rec = next(store.iter(route="llm"))
    assert rec.source != "llm" and rec.parse_ok is False and rec.response == answer
