"""ChatOpenAI under the shunt: one attempt per request, bounded, every request counted once."""

from __future__ import annotations

import time
from pathlib import Path

from langchain_openai import ChatOpenAI

from bench.faultproxy import FaultProxy
from datashunt import CallStore, RetryPolicy, ShuntPolicy
from langchain_datashunt import DataShuntRunnable
from langchain_datashunt.model_call import DEFAULT_ATTEMPT_TIMEOUT, single_attempt
from tests.conftest import KeywordGate

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, jitter=0.0)


def _runnable(chat: ChatOpenAI, store: Path) -> DataShuntRunnable:
    policy = ShuntPolicy(labels=("negative", "positive"), threshold=0.9)
    return DataShuntRunnable.from_gate(KeywordGate(), policy, llm=chat, retry=FAST, store=store)


def test_the_providers_own_retries_do_not_multiply_the_shunts(tmp_path: Path) -> None:
    with FaultProxy(None, default="503") as proxy:
        chat = ChatOpenAI(model="m", base_url=proxy.base_url, api_key="sk-test")  # max_retries=2
        out = _runnable(chat, tmp_path / "c.sqlite").invoke("it came")
        assert out.source == "fallback" and out.attempts == 3
        # 3 attempts of the shunt's policy, not 3 x (1 + ChatOpenAI's 2 retries) = 9
        assert proxy.requests == 3
    (rec,) = CallStore(tmp_path / "c.sqlite").iter()
    assert rec.extra is not None and rec.extra["attempts"] == 3 and rec.error is not None


def test_a_hung_server_is_cut_off_per_attempt(tmp_path: Path) -> None:
    with FaultProxy(None, default="timeout:20") as proxy:
        chat = ChatOpenAI(model="m", base_url=proxy.base_url, api_key="sk-test", timeout=0.5)
        t0 = time.monotonic()
        out = _runnable(chat, tmp_path / "c.sqlite").invoke("it came")
        assert time.monotonic() - t0 < 6  # 3 attempts of 0.5 s, not the SDK's retries of 20 s
        assert out.source == "fallback" and proxy.requests == 3


def test_chatopenai_defaults_get_a_deadline_and_the_users_model_is_untouched() -> None:
    chat = ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="sk-test")
    bounded = single_attempt(chat, FAST)
    assert bounded.max_retries == 0 and bounded.request_timeout == DEFAULT_ATTEMPT_TIMEOUT
    assert bounded.root_client.max_retries == 0 and bounded.root_async_client.max_retries == 0
    assert chat.max_retries != 0 and chat.root_client.max_retries != 0  # a copy, not a change
    assert single_attempt(lambda x: x, FAST) is not None  # other runnables pass through


def test_a_reply_without_choices_is_retried_like_any_unreadable_answer(tmp_path: Path) -> None:
    with FaultProxy(None, ["nochoices", "nochoices"], default="answer:negative") as proxy:
        chat = ChatOpenAI(model="m", base_url=proxy.base_url, api_key="sk-test")
        out = _runnable(chat, tmp_path / "c.sqlite").invoke("it came")
        assert (out.label, out.source, out.attempts) == ("negative", "llm", 3)
        assert proxy.requests == 3


def test_chatopenai_defaults_are_cut_off_at_the_policys_deadline(tmp_path: Path) -> None:
    with FaultProxy(None, default="timeout:20") as proxy:
        chat = ChatOpenAI(model="m", base_url=proxy.base_url, api_key="sk-test")  # no timeout
        policy = ShuntPolicy(labels=("negative", "positive"), threshold=0.9)
        retry = RetryPolicy(attempts=3, base_delay=0.01, jitter=0.0, deadline=1.5)
        runnable = DataShuntRunnable.from_gate(
            KeywordGate(), policy, llm=chat, retry=retry, store=tmp_path / "c.sqlite"
        )
        t0 = time.monotonic()
        out = runnable.invoke("it came")
        assert time.monotonic() - t0 < 4  # the deadline, not 30 s per attempt
        assert out.source == "fallback" and proxy.requests == out.attempts
