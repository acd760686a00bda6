"""OpenAILikeLLM over a mock HTTP transport: payloads, logprobs, streams, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from datashunt import CallStore, LLMError, Shunt, ShuntPolicy, ShuntResult
from datashunt.llm import RetryPolicy
from llamaindex_datashunt import DataShuntEventHandler, DataShuntLLM, OpenAILikeLLM
from llamaindex_datashunt._runner import to_reply
from tests.support.llamaindex_fakes import (  # noqa: F401 - fixtures
    llamaindex_sandbox,
    openai_logprobs,
    sentiment_gate,
    temp_store,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


LOGPROBS = openai_logprobs([("positive", -0.1), ("negative", -2.4)])


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": body["model"],
        "choices": [
            {
                "message": {"role": "assistant", "content": "positive"},
                "logprobs": {"content": LOGPROBS},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }


def _sse(body: dict[str, Any]) -> bytes:
    chunks = [
        {"model": body["model"], "choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "posi"}, "logprobs": {"content": LOGPROBS}}]},
        {"choices": [{"delta": {"content": "tive"}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
    ]
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


class Server:
    """A fake chat-completions endpoint; keeps the request bodies."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        if self.status >= 400:
            return httpx.Response(self.status, text="model not loaded")
        if body.get("stream"):
            return httpx.Response(
                200, content=_sse(body), headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(200, json=_answer(body))


def _llm(server: Callable[[httpx.Request], httpx.Response], **kw: Any) -> OpenAILikeLLM:
    transport = httpx.MockTransport(server)
    return OpenAILikeLLM(
        model="smol",
        api_base="http://local.test/v1/",
        api_key="secret",
        transport=transport,
        async_transport=transport,
        **kw,
    )


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def test_chat_payload_and_response() -> None:
    server = Server()
    llm = _llm(server, logprobs=True, top_logprobs=3, max_tokens=4, additional_kwargs={"seed": 1})
    resp = llm.chat(_user("hi"), stop=["\n"])
    assert resp.message.content == "positive"
    body = server.bodies[0]
    assert body["model"] == "smol" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["logprobs"] is True and body["top_logprobs"] == 3 and body["max_tokens"] == 4
    assert body["seed"] == 1 and body["stop"] == ["\n"] and body["stream"] is False
    assert body["temperature"] == 0.0
    assert server.headers[0]["authorization"] == "Bearer secret"
    reply = to_reply(resp)
    assert reply.logprobs == LOGPROBS and reply.prompt_tokens == 9 and reply.model == "smol"
    assert resp.logprobs is not None and resp.logprobs[0][0].token == "positive"


def test_no_logprobs_unless_asked() -> None:
    server = Server()
    _llm(server).complete("hi")
    assert "logprobs" not in server.bodies[0]


async def test_async_and_completion_forms() -> None:
    server = Server()
    llm = _llm(server, logprobs=True)
    assert (await llm.achat(_user("a"))).message.content == "positive"
    done = await llm.acomplete("b")
    assert done.text == "positive" and to_reply(done).logprobs == LOGPROBS
    assert [b["messages"][0]["content"] for b in server.bodies] == ["a", "b"]


def test_stream_accumulates_text_and_logprobs() -> None:
    llm = _llm(Server(), logprobs=True)
    chunks = list(llm.stream_chat(_user("hi")))
    assert "".join(c.delta or "" for c in chunks) == "positive"
    last = chunks[-1]
    assert last.message.content == "positive"
    reply = to_reply(last)
    assert reply.text == "positive" and reply.logprobs == LOGPROBS and reply.model == "smol"
    completions = list(llm.stream_complete("hi"))
    assert completions[-1].text == "positive"


async def test_async_stream() -> None:
    llm = _llm(Server())
    chunks = [c async for c in await llm.astream_chat(_user("hi"))]
    assert chunks[-1].message.content == "positive"
    completions = [c async for c in await llm.astream_complete("hi")]
    assert "".join(c.delta or "" for c in completions) == "positive"


async def test_http_errors_say_what_happened() -> None:
    llm = _llm(Server(status=503))
    with pytest.raises(LLMError, match="HTTP 503: model not loaded"):
        llm.chat(_user("x"))
    with pytest.raises(LLMError, match="HTTP 503"):
        list(llm.stream_chat(_user("x")))
    with pytest.raises(LLMError, match="HTTP 503"):
        await llm.achat(_user("x"))


def test_unreachable_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LLMError, match="could not reach .*is the server running"):
        _llm(refuse).complete("x")


def test_metadata_and_no_secret_in_payload() -> None:
    llm = _llm(Server(), max_tokens=8, context_window=1024)
    meta = llm.metadata
    assert (meta.model_name, meta.is_chat_model, meta.num_output) == ("smol", True, 8)
    assert meta.context_window == 1024
    assert "secret" not in json.dumps(llm.to_payload()) and "secret" not in repr(llm)


def test_complete_is_one_observed_call(store: CallStore) -> None:
    with DataShuntEventHandler(store) as h:
        _llm(Server()).complete("hi")
        h.flush()
    (rec,) = list(store.iter())
    assert rec.response == "positive" and rec.model == "smol" and rec.prompt_tokens == 9


# ---- issue 12, bug 2: its errors carry status / retry-after, so RetryPolicy retries them ------


class Flaky(Server):
    """Fails with the given responses first, then answers."""

    def __init__(self, *failures: httpx.Response | Exception) -> None:
        super().__init__()
        self.failures = list(failures)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.bodies.append(json.loads(request.content))
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return super().__call__(request)


FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


async def test_a_503_then_an_answer_is_retried_by_retry_policy() -> None:
    server = Flaky(httpx.Response(503, text="model loading"))
    out = FAST.call(_llm(server).complete, "x")
    assert out.error is None and out.attempts == 2 and len(server.bodies) == 2
    assert out.value is not None and out.value.text == "positive"
    server = Flaky(httpx.Response(503, text="model loading"))
    out = await FAST.acall(_llm(server).achat, _user("x"))
    assert out.error is None and out.attempts == 2 and len(server.bodies) == 2


def test_429_retry_after_and_a_refused_connection_are_retried() -> None:
    refused = httpx.ConnectError("connection refused")
    limited = httpx.Response(429, text="slow down", headers={"retry-after": "0.02"})
    server = Flaky(limited, refused)
    waits: list[float] = []
    out = FAST.call(_llm(server).complete, "x", sleep=waits.append)
    assert out.error is None and out.attempts == 3 and len(server.bodies) == 3
    assert waits[0] == 0.02  # the server's Retry-After, not the backoff
    spent = FAST.call(_llm(Flaky(*[httpx.Response(503)] * 3)).complete, "x")
    assert isinstance(spent.error, LLMError) and spent.attempts == 3
    assert spent.error.status == 503
    bad = FAST.call(_llm(Flaky(httpx.Response(400, text="bad request"))).complete, "x")
    assert bad.attempts == 1 and isinstance(bad.error, LLMError) and bad.error.status == 400


def test_through_a_shunt_the_503_is_retried_and_counted(store: CallStore) -> None:
    gate = sentiment_gate()
    shunt = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=0.99), store=store, retry=FAST)
    server = Flaky(httpx.Response(503, text="model loading"))
    llm = DataShuntLLM(_llm(server, logprobs=True), shunt)
    result = llm.complete("so-so, hard to say").raw
    assert isinstance(result, ShuntResult) and result.source == "llm"
    assert result.attempts == 2 and result.error is None and len(server.bodies) == 2
    (rec,) = list(store.iter(route="llm"))
    assert rec.extra == {"attempts": 2} and rec.error is None
