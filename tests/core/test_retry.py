"""RetryPolicy: which failures are retried, how long it waits, and how attempts are counted
through the core shunt, the LangChain runnable and the stream idle timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from datashunt import CallStore, ConfigError, LLMError, Shunt, ShuntPolicy
from datashunt.engine import StreamIdleError, aiter_with_idle_timeout, iter_with_idle_timeout
from datashunt.llm.retry import RetryPolicy, retry_after_of, status_of
from langchain_datashunt import DataShuntRunnable
from tests.conftest import FakeLLM, KeywordGate
from tests.support.lc_fakes import CountingChat

LABELS = ("negative", "positive")
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


class _Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers


class SDKError(Exception):
    """Shaped like openai.APIStatusError: status_code and response.headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"Error code: {status}")
        self.status_code = status
        self.response = _Response(status, headers or {})


class APIConnectionError(Exception):
    """Named like openai's: recognised by name, so the core imports no SDK."""


def _with_response(exc: Exception, status: int) -> Exception:
    exc.response = _Response(status, {})  # type: ignore[attr-defined]
    return exc


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="attempts must be an integer >= 1, got 0"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError, match="jitter must be in"):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ConfigError, match="base_delay"):
        RetryPolicy(base_delay=-1)
    assert RetryPolicy.none().attempts == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=3.0, jitter=0.5)
    exc = TimeoutError("slow")
    assert [policy.delay(n, exc, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]
    assert policy.delay(3, exc, rng=lambda: 0.999) == pytest.approx(2.0 * 0.5005)
    assert policy.delay(10, exc) is None  # attempts spent


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (TimeoutError("read timed out"), True),
        (ConnectionRefusedError("refused"), True),
        (json.JSONDecodeError("Expecting value", "<html>", 0), True),
        (_with_response(json.JSONDecodeError("Expecting value", "<html>", 0), 200), True),
        (APIConnectionError("Connection error."), True),
        (SDKError(429), True),
        (SDKError(500), True),
        (SDKError(503), True),
        (SDKError(400), False),
        (SDKError(401), False),
        (LLMError("HTTP 502", status=502), True),
        (LLMError("bad request", status=400), False),
        (LLMError("empty", retryable=True), True),
        (LLMError("no", retryable=False, status=503), False),
        (ValueError("a bug"), False),
        (KeyError("prompt variable"), False),
    ],
)
def test_which_errors_are_retried(exc: Exception, retried: bool) -> None:
    assert RetryPolicy().retryable(exc) is retried


def test_retry_after_seconds_date_and_ms_and_cap() -> None:
    assert retry_after_of(SDKError(429, {"retry-after": "2"})) == 2.0
    assert retry_after_of(SDKError(429, {"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    later = datetime.now(timezone.utc) + timedelta(seconds=30)  # noqa: UP017
    from_date = retry_after_of(SDKError(429, {"retry-after": format_datetime(later, usegmt=True)}))
    assert from_date is not None and 25 < from_date <= 30
    assert retry_after_of(SDKError(429, {"retry-after": "soon"})) is None
    assert retry_after_of(LLMError("x", retry_after=1.5)) == 1.5
    assert status_of(LLMError("x", status=429)) == 429 and status_of(ValueError()) is None
    policy = RetryPolicy(max_retry_after=10)
    assert policy.delay(1, SDKError(429, {"retry-after": "3"})) == 3.0
    # a server asking for longer than we wait fails the call now rather than park the caller
    assert policy.delay(1, SDKError(429, {"retry-after": "120"})) is None
    no_honour = RetryPolicy(honour_retry_after=False, base_delay=0.1, jitter=0)
    assert no_honour.delay(1, SDKError(429, {"retry-after": "3"})) == 0.1


def test_call_counts_attempts_and_never_raises() -> None:
    seen: list[float] = []
    errors = [TimeoutError("1"), SDKError(503)]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    out = RetryPolicy(attempts=3, base_delay=0.5, jitter=0).call(flaky, sleep=seen.append)
    assert (out.value, out.error, out.attempts) == ("ok", None, 3)
    assert seen == [0.5, 1.0]
    spent = FAST.call(lambda: (_ for _ in ()).throw(TimeoutError("always")))
    assert spent.value is None and isinstance(spent.error, TimeoutError) and spent.attempts == 3
    once = FAST.call(lambda: (_ for _ in ()).throw(ValueError("bug")))
    assert once.attempts == 1 and isinstance(once.error, ValueError)


async def test_acall_retries_and_lets_cancellation_through() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise LLMError("HTTP 429", status=429, retry_after=0.01)
        return "ok"

    out = await FAST.acall(flaky)
    assert out.value == "ok" and out.attempts == 3

    async def forever() -> str:
        await asyncio.sleep(10)
        return "never"

    task = asyncio.create_task(FAST.acall(forever))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---- through the core shunt ---------------------------------------------------------------


def _flaky(failures: list[Any], answer: str = "negative") -> FakeLLM:
    def reply(_req: Any) -> Any:
        return failures.pop(0) if failures else answer

    return FakeLLM(reply)


def test_shunt_retries_then_answers_and_records_attempts(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = _flaky([TimeoutError("slow"), LLMError("HTTP 500", status=500), ""])
    res = Shunt(KeywordGate(), llm=llm, store=store, retry=RetryPolicy(4, 0.001)).run("plain")
    assert res.source == "llm" and res.label == "negative" and res.attempts == 4
    assert len(llm.requests) == 4  # the empty answer was retried too
    rec = next(store.iter(route="llm"))
    assert rec.extra == {"attempts": 4} and rec.error is None


def test_shunt_gives_up_fallback_or_raise_and_records_the_failure(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    always = FakeLLM(LLMError("HTTP 503 from x", status=503))
    res = Shunt(KeywordGate(), llm=always, store=store, retry=FAST).run("plain")
    assert res.source == "fallback" and res.label in LABELS and res.attempts == 3
    assert res.error is not None and "HTTP 503" in res.error
    strict = Shunt(KeywordGate(), llm=always, store=store, retry=FAST, on_llm_error="raise")
    with pytest.raises(LLMError, match="failed after 3 attempts: LLMError: HTTP 503") as info:
        strict.run("plain")
    assert info.value.status == 503 and info.value.attempts == 3
    recs = list(store.iter(route="llm"))
    assert len(recs) == 2 and all(r.error and r.extra == {"attempts": 3} for r in recs)
    # a client error is not retried
    bad = FakeLLM(LLMError("HTTP 400", status=400))
    assert Shunt(KeywordGate(), llm=bad, retry=FAST).run("plain").attempts == 1


async def test_async_shunt_paths_retry(tmp_path: Path) -> None:
    llm = _flaky([ConnectionResetError("reset"), TimeoutError("slow")])
    res = await Shunt(KeywordGate(), allm=llm.acall, retry=FAST).arun("plain")
    assert res.source == "llm" and res.attempts == 3
    sync_in_thread = _flaky([ConnectionResetError("reset")])
    res = await Shunt(KeywordGate(), llm=sync_in_thread, retry=FAST).arun("plain")
    assert res.attempts == 2
    results = await Shunt(
        KeywordGate(), allm=FakeLLM(TimeoutError("x")).acall, retry=FAST
    ).arun_batch(["a b", "c d", "good"])
    assert [r.attempts for r in results] == [3, 3, 0]  # type: ignore[union-attr]


# ---- through the LangChain runnable --------------------------------------------------------


def _runnable(llm: Any, **kw: Any) -> DataShuntRunnable:
    return DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=llm, retry=FAST, **kw
    )


def _failing_first(n: int, exc: Exception, answer: str = "positive") -> CountingChat:
    state = {"left": n}

    def answer_fn(_prompt: str) -> str | Exception:
        if state["left"] > 0:
            state["left"] -= 1
            return exc
        return answer

    return CountingChat(answer=answer_fn)


async def test_runnable_retries_sync_and_async(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = _failing_first(2, SDKError(429, {"retry-after": "0.01"}))
    out = _runnable(llm, store=store).invoke("plain")
    assert out.source == "llm" and out.attempts == 3 and llm.calls == 3
    assert next(store.iter(route="llm")).extra == {"attempts": 3}
    llm = _failing_first(1, SDKError(500))
    outs = await _runnable(llm).abatch(["plain", "good"])
    assert [o.attempts for o in outs] == [2, 0]
    empty = CountingChat(answer=lambda _p: "")
    out = _runnable(empty).invoke("plain")
    assert out.source == "fallback" and out.attempts == 3 and "empty answer" in (out.error or "")


class HangingChat(CountingChat):
    """Streams; the first ``hangs`` streams stall before (or after) their first token."""

    hangs: int = 1
    mid: bool = False
    pause: float = 5.0

    def _stream(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> Iterator[Any]:
        stall = self.calls < self.hangs
        text = self._text(messages)
        if stall and self.mid:
            yield ChatGenerationChunk(message=AIMessageChunk(content="posi"))
        if stall:
            time.sleep(self.pause)
        yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kw: Any
    ) -> AsyncIterator[Any]:
        stall = self.calls < self.hangs
        text = self._text(messages)
        if stall and self.mid:
            yield ChatGenerationChunk(message=AIMessageChunk(content="posi"))
        if stall:
            await asyncio.sleep(self.pause)
        yield ChatGenerationChunk(message=AIMessageChunk(content=text))


async def test_stream_idle_timeout_retries_before_the_first_token() -> None:
    llm = HangingChat(hangs=1)
    shunt = _runnable(llm, stream_idle_timeout=0.2)
    t0 = time.perf_counter()
    chunks = list(shunt.stream("plain"))
    assert time.perf_counter() - t0 < 2.0  # not the 5 s stall
    assert chunks[-1].source == "llm" and chunks[-1].attempts == 2
    llm = HangingChat(hangs=1)
    chunks = [c async for c in _runnable(llm, stream_idle_timeout=0.2).astream("plain")]
    assert chunks[-1].source == "llm" and chunks[-1].attempts == 2


async def test_stream_hanging_after_a_token_is_not_retried() -> None:
    llm = HangingChat(hangs=1, mid=True, pause=3.0)
    chunks = [c async for c in _runnable(llm, stream_idle_timeout=0.2).astream("plain")]
    final = chunks[-1]
    assert final.source == "fallback" and final.attempts == 1 and final.label in LABELS
    assert "sent nothing for 0.2s" in (final.error or "")
    strict = _runnable(
        HangingChat(hangs=1, mid=True, pause=3.0), stream_idle_timeout=0.2, on_llm_error="raise"
    )
    with pytest.raises(LLMError, match="stream_idle_timeout"):
        list(strict.stream("plain"))


def test_idle_helpers() -> None:
    assert list(iter_with_idle_timeout(iter([1, 2]), None)) == [1, 2]
    assert list(iter_with_idle_timeout(iter([1, 2]), 1.0)) == [1, 2]

    def slow() -> Iterator[int]:
        yield 1
        time.sleep(2)
        yield 2

    got: list[int] = []
    with pytest.raises(StreamIdleError) as info:
        got.extend(iter_with_idle_timeout(slow(), 0.1))
    assert got == [1] and isinstance(info.value, TimeoutError)
    assert RetryPolicy().retryable(info.value)

    def broken() -> Iterator[int]:
        yield 1
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        list(iter_with_idle_timeout(broken(), 1.0))
    with pytest.raises(ConfigError):
        list(iter_with_idle_timeout(iter([1]), 0))

    async def aslow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(2)
        yield 2

    async def collect() -> list[int]:
        return [x async for x in aiter_with_idle_timeout(aslow(), 0.1)]

    with pytest.raises(StreamIdleError):
        asyncio.run(collect())
