"""The OpenAI-compatible client (openai SDK) against a tiny in-process HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest

from datashunt import ConfigError, LLMError, Shunt, ShuntPolicy
from datashunt.data import Dataset, Example
from datashunt.llm import OpenAICompatLLM, ReplyAccumulator, RetryPolicy
from datashunt.training import MaxAccuracy, choose_threshold, measure_llm
from datashunt.types import Message
from tests.conftest import KeywordGate

# (status, body) or (status, body, headers); a bytes body is sent as it is
RESPONSES: list[tuple[Any, ...]] = []
BODIES: list[dict[str, Any]] = []
HEADERS: list[dict[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        BODIES.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        HEADERS.append({k.lower(): v for k, v in self.headers.items()})
        status, body, *more = RESPONSES.pop(0) if RESPONSES else (200, _ok("negative"))
        headers = {"Content-Type": "application/json", **(more[0] if more else {})}
        if isinstance(body, bytes):
            raw = body
        else:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


def _ok(text: str) -> dict[str, Any]:
    lp = {
        "content": [
            {"token": text, "logprob": -0.1, "top_logprobs": [{"token": text, "logprob": -0.1}]}
        ]
    }
    return {
        "model": "fake-1",
        "choices": [{"message": {"role": "assistant", "content": text}, "logprobs": lp}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
    }


@pytest.fixture
def url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RESPONSES.clear()
    BODIES.clear()
    HEADERS.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_reply_logprobs_and_request_body(url: str) -> None:
    llm = OpenAICompatLLM(url, "fake-1", api_key="k")
    res = Shunt(KeywordGate(), ShuntPolicy(labels=("negative", "positive")), llm=llm).run("meh")
    assert res.source == "llm" and res.label == "negative" and res.reply is not None
    assert res.reply.prompt_tokens == 12 and res.reply.model == "fake-1"
    assert res.llm_confidence == pytest.approx(1.0)
    body = BODIES[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 8
    assert "meh" in body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"error": "boom"}, "HTTP 500"),
        (200, "not json", "invalid JSON"),
        (200, {"x": 1}, "not a chat"),
    ],
)
def test_errors_become_llm_errors(url: str, status: int, body: Any, message: str) -> None:
    RESPONSES.append((status, body))
    with pytest.raises(LLMError, match=message):
        OpenAICompatLLM(url, "m")(_request())


def test_unreachable_and_bad_url() -> None:
    with pytest.raises(LLMError, match="could not reach .*is the server running"):
        OpenAICompatLLM("http://127.0.0.1:9/v1", "m", timeout=2)(_request())
    with pytest.raises(ConfigError):
        OpenAICompatLLM("file:///etc/passwd", "m")


def _request() -> Any:
    from datashunt.types import Decision, LLMRequest

    d = Decision(
        "llm", "negative", 0.5, {"negative": 0.5, "positive": 0.5}, ("negative", "positive"), "r"
    )
    return LLMRequest("t", d, {"candidates": "negative, positive"}, "prompt")


def test_measure_llm_feeds_max_accuracy(url: str) -> None:
    # the fake LLM always says "negative": right on negatives, wrong on positives
    ex = [Example(f"plain {i}", "negative" if i % 2 else "positive") for i in range(10)]
    dev = Dataset(tuple(ex), ("negative", "positive"))
    correct = measure_llm(KeywordGate(), dev, OpenAICompatLLM(url, "m"), sample=6)
    asked = ~np.isnan(correct)
    assert asked.sum() == 6 and len(BODIES) == 6
    assert all(correct[i] == float(ex[i].label == "negative") for i in np.flatnonzero(asked))
    conf = np.full(10, 0.5)
    delta, _ = choose_threshold(conf, np.zeros(10), MaxAccuracy(llm_correct=correct))
    assert 0.0 <= delta <= 1.0


def test_cli_calibrate_with_llm_in_the_loop(
    url: str, tiny_bert: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from datashunt.cli import main

    gate = tmp_path / "gate"
    shutil.copytree(tiny_bert, gate)
    data = tmp_path / "dev.csv"
    data.write_text(
        "text,label\n"
        + "".join(f"plain words {i},{['negative', 'positive'][i % 2]}\n" for i in range(12))
    )
    code = main(
        [
            "calibrate",
            "--gate",
            str(gate),
            "--data",
            str(data),
            "--target",
            "accuracy",
            "--llm-url",
            url,
            "--llm-sample",
            "6",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and len(BODIES) == 6
    assert "LLM accuracy on the sample" in out and "max expected accuracy (LLM measured on 6" in out
    assert ShuntPolicy.load(gate).target is not None


# ---- the openai-SDK client: messages, errors for RetryPolicy, streams, async ---------------


def test_chat_sends_the_messages_and_overrides(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatLLM(url, "m", top_logprobs=0, extra_body={"seed": 1, "stop": ["x"]})
    sent = [Message("system", "Be brief."), Message("user", "hi, «you»")]
    reply = llm.chat(sent, max_tokens=None, stop=["\n"])
    body = BODIES[0]
    assert body["messages"] == [m.to_json() for m in sent] and body["model"] == "m"
    assert body["seed"] == 1 and body["stop"] == ["\n"] and body["stream"] is False
    assert "max_tokens" not in body and "logprobs" not in body and "top_logprobs" not in body
    assert HEADERS[0]["authorization"] == "Bearer local"  # no key: a placeholder, never $KEY
    assert (reply.text, reply.model, reply.prompt_tokens) == ("negative", "fake-1", 12)
    assert reply.raw is not None and reply.raw.choices[0].message.content == "negative"
    llm.close()


def test_http_errors_carry_status_and_retry_after_and_are_sent_once(url: str) -> None:
    RESPONSES.append((503, "model not loaded", {"Retry-After": "2"}))
    llm = OpenAICompatLLM(url, "m", api_key="k")
    with pytest.raises(LLMError) as info:
        llm(_request())
    err = info.value
    assert err.status == 503 and err.retry_after == 2.0 and err.retryable is None
    assert str(err).startswith("HTTP 503: model not loaded (POST ") and "worth another" in str(err)
    assert len(BODIES) == 1  # the SDK's own retries are off: RetryPolicy counts every attempt
    RESPONSES.append((401, {"error": "bad key"}))
    with pytest.raises(LLMError, match="HTTP 401: .*check api_key") as info:
        llm(_request())
    assert not RetryPolicy().retryable(info.value)


def test_retry_policy_retries_503_and_429_with_the_servers_wait(url: str) -> None:
    RESPONSES.append((503, "loading", {"Retry-After": "0"}))
    RESPONSES.append((429, "slow down", {"retry-after-ms": "10", "Retry-After": "9"}))
    waits: list[float] = []
    out = RetryPolicy(attempts=3).call(OpenAICompatLLM(url, "m"), _request(), sleep=waits.append)
    assert out.error is None and out.attempts == 3 and out.value is not None
    assert out.value.text == "negative" and waits == [0.0, 0.01] and len(BODIES) == 3


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ((200, "<html>bad gateway</html>", {"Content-Type": "text/html"}), "invalid JSON"),
        ((200, "not json"), "invalid JSON"),
        ((200, {"choices": []}), "not a chat-completions response"),
    ],
)
def test_malformed_bodies_are_retryable(url: str, response: tuple[Any, ...], message: str) -> None:
    RESPONSES.append(response)
    with pytest.raises(LLMError, match=message) as info:
        OpenAICompatLLM(url, "m")(_request())
    assert info.value.retryable is True and RetryPolicy().retryable(info.value)


def test_refused_and_timed_out_connections_are_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LLMError, match="could not reach .*is the server running") as info:
        OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", timeout=2)(_request())
    assert info.value.retryable is True and info.value.status is None
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with pytest.raises(LLMError, match=r"did not answer within 0\.3s") as info:
            OpenAICompatLLM(base, "m", timeout=0.3)(_request())
    assert info.value.retryable is True


async def test_async_calls(url: str) -> None:
    llm = OpenAICompatLLM(url, "m")
    replies = await asyncio.gather(llm.acall(_request()), llm.achat([Message("user", "hi")]))
    assert [r.text for r in replies] == ["negative", "negative"] and len(BODIES) == 2
    RESPONSES.append((429, "slow", {"Retry-After": "0"}))
    out = await RetryPolicy(attempts=2).acall(llm.acall, _request())
    assert out.attempts == 2 and out.value is not None and out.value.text == "negative"


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def _lp(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.2, "top_logprobs": [{"token": token, "logprob": -0.2}]}


STREAM = _sse(
    [
        {"model": "fake-1", "choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "nega"}, "logprobs": {"content": [_lp("nega")]}}]},
        {"choices": [{"delta": {"content": "tive"}, "logprobs": {"content": [_lp("tive")]}}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    ]
)


async def test_streams_yield_deltas_that_join_into_the_answer(url: str) -> None:
    llm = OpenAICompatLLM(url, "m")
    for _ in range(2):
        RESPONSES.append((200, STREAM, {"Content-Type": "text/event-stream"}))
    sync = list(llm.stream_chat([Message("user", "hi")]))
    deltas = [d async for d in llm.astream_chat([Message("user", "hi")])]
    for got in (sync, deltas):
        assert [d.text for d in got] == ["", "nega", "tive", ""]
        acc = ReplyAccumulator()
        whole = [acc.add(d) for d in got][-1]
        assert (whole.text, whole.model, whole.prompt_tokens) == ("negative", "fake-1", 7)
        assert whole.logprobs == [_lp("nega"), _lp("tive")]
    assert all(b["stream"] is True and b["max_tokens"] == 8 for b in BODIES)


async def test_stream_errors_are_llm_errors(url: str) -> None:
    llm = OpenAICompatLLM(url, "m")
    stream = llm.stream_chat([Message("user", "hi")])
    assert BODIES == []  # nothing is sent before the first item is asked for
    RESPONSES.append((503, "busy"))
    with pytest.raises(LLMError, match="HTTP 503: busy") as info:
        next(stream)
    assert info.value.status == 503
    RESPONSES.append((502, "bad gateway"))
    with pytest.raises(LLMError, match="HTTP 502"):
        [d async for d in llm.astream_chat([Message("user", "hi")])]


def test_the_core_loads_no_sdk_until_the_client_is_used() -> None:
    code = (
        "import sys, datashunt, datashunt.llm;"
        "before = 'openai' in sys.modules;"
        "from datashunt.llm import OpenAICompatLLM;"
        "print(before, 'openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_llm_package_api_is_pinned() -> None:
    import datashunt.llm as llm

    assert set(llm.__all__) == {
        "RETRYABLE_STATUSES",
        "Attempted",
        "CachedAnswer",
        "CachedLLM",
        "ColumnReplayLLM",
        "LLMCache",
        "LLMServer",
        "LLMServerError",
        "OpenAICompatLLM",
        "ReplayLLM",
        "ReplyAccumulator",
        "RetryPolicy",
        "empty_answer_error",
        "find_default_gguf",
        "prompt_key",
        "retry_after_of",
        "status_of",
    }
    for name in llm.__all__:
        assert getattr(llm, name) is not None, name
    with pytest.raises(AttributeError):
        _ = llm.NoSuchThing  # type: ignore[attr-defined]
