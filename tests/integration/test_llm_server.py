"""The real embedded LLM server (llama.cpp + SmolLM2) over plain HTTP, as any OpenAI client
sees it: the model list, chat completions with logprobs, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from datashunt.llm.server import LLMServer, LLMServerError

pytestmark = pytest.mark.llm_server
PROMPT = (
    "Classify the sentiment of this review as positive or negative. Answer with one word.\n"
    "Review: Wonderful blender, makes smoothies in seconds and cleans easily.\nAnswer:"
)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> Any:
    with _OPENER.open(url, timeout=30) as resp:
        return json.load(resp)


def _chat(server: LLMServer, **body: Any) -> Any:
    payload = {
        "model": server.model_name,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        **body,
    }
    req = urllib.request.Request(  # noqa: S310 - base_url is always http://127.0.0.1:PORT
        server.base_url + "/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer local"},
    )
    with _OPENER.open(req, timeout=120) as resp:
        return json.load(resp)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_models_endpoint_lists_the_model(live_server: LLMServer) -> None:
    ids = [m["id"] for m in _get(live_server.base_url + "/models")["data"]]
    assert ids == [live_server.model_name]


def test_chat_completion_returns_text_and_logprobs(live_server: LLMServer) -> None:
    out = _chat(live_server, max_tokens=3, logprobs=True, top_logprobs=5)
    choice = out["choices"][0]
    assert choice["message"]["content"].strip()
    content = choice["logprobs"]["content"]
    assert 1 <= len(content) <= 3
    first = content[0]
    assert first["logprob"] <= 0 and len(first["top_logprobs"]) == 5
    top = [t["logprob"] for t in first["top_logprobs"]]
    assert top == sorted(top, reverse=True) and top[0] >= first["logprob"] - 1e-6


def test_max_completion_tokens_is_honoured(live_server: LLMServer) -> None:
    # What the openai SDK and langchain-openai send; llama-cpp-python alone would ignore it.
    out = _chat(
        live_server,
        max_completion_tokens=2,
        messages=[{"role": "user", "content": "Tell me a long story."}],
    )
    assert out["usage"]["completion_tokens"] <= 2
    assert out["choices"][0]["finish_reason"] == "length"


def test_langchain_chat_openai_sees_logprobs(live_server: LLMServer) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    llm = chat_openai(
        base_url=live_server.base_url,
        api_key="local",
        model=live_server.model_name,
        temperature=0,
        max_tokens=3,
        logprobs=True,
        top_logprobs=5,
    )
    msg = llm.invoke(PROMPT)
    assert isinstance(msg.content, str) and msg.content.strip()
    assert msg.response_metadata["token_usage"]["completion_tokens"] <= 3
    content = msg.response_metadata["logprobs"]["content"]
    assert {"token", "logprob", "top_logprobs"} <= set(content[0])


def test_stop_leaves_no_process_even_after_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), LLMServer(n_ctx=512) as server:
        pid = server.pid
        assert pid is not None and server.running
        raise RuntimeError("boom")
    assert not server.running and _gone(pid)


def test_invalid_gguf_fails_fast_with_the_log_tail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    t0 = time.monotonic()
    with pytest.raises(LLMServerError, match="exited with code") as err:
        LLMServer(bad, log_path=tmp_path / "server.log").start()
    assert time.monotonic() - t0 < 30
    assert "Failed to load model" in str(err.value)  # llama.cpp's own complaint, from the log


def test_cli_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datashunt.llm.server_cli", "--n-ctx", "512"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("serving "), lines
        base_url = lines[0].split(" at ")[-1].strip()
        assert 'ChatOpenAI(base_url="' + base_url in lines[2]
        assert _get(base_url + "/models")["data"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with pytest.raises(OSError):
        _get(base_url + "/models")
