"""The stdlib OpenAI-compatible client against a tiny in-process HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest

from datashunt import ConfigError, LLMError, Shunt, ShuntPolicy
from datashunt.calibration import MaxAccuracy, choose_threshold, measure_llm
from datashunt.data import Dataset, Example
from datashunt.openai_compat import OpenAICompatLLM
from tests.conftest import KeywordGate

RESPONSES: list[tuple[int, Any]] = []
BODIES: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        BODIES.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status, body = RESPONSES.pop(0) if RESPONSES else (200, _ok("negative"))
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
    with pytest.raises(LLMError, match="cannot reach"):
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
