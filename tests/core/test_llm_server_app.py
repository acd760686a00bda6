"""The local server's child module (``python -m datashunt.llm.server_app``) without llama.cpp:
the max_completion_tokens rewrite, the ASGI middleware, its command line, and a real ``-m``
start against a stand-in ``llama_cpp`` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from datashunt.llm import server_app
from datashunt.llm.server_app import (
    MaxCompletionTokens,
    command,
    patch_create_app,
    patch_model_params,
    rename_max_completion_tokens,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_completion_tokens": 5, "model": "m"}, {"model": "m", "max_tokens": 5}),
        ({"max_completion_tokens": 5, "max_tokens": 2}, {"max_tokens": 2}),
        ({"max_completion_tokens": 5, "max_tokens": None}, {"max_tokens": 5}),
        ({"max_tokens": 3, "label": "ünïcode, «quoted»"}, None),  # untouched, byte for byte
        ([1, 2], None),
    ],
)
def test_rename_max_completion_tokens(body: Any, expected: dict[str, Any] | None) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    out = rename_max_completion_tokens(raw)
    if expected is None:
        assert out is raw
    else:
        assert json.loads(out) == expected
    assert rename_max_completion_tokens(b"\xff not json") == b"\xff not json"


class Recorder:
    """An ASGI app that keeps the scope and the body it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        after = await receive() if scope["type"] == "http" else None
        self.calls.append((dict(scope), message.get("body", b""), after))


def _receiver(messages: list[dict[str, Any]]) -> Any:
    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


async def _noop_send(message: Any) -> None:
    pass


async def test_middleware_rewrites_a_chunked_post_body_and_its_length() -> None:
    app = Recorder()
    body = json.dumps({"model": "m", "max_completion_tokens": 4}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"Content-Length", str(len(body)).encode()), (b"x-a", b"1")],
    }
    chunks = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:], "more_body": False},
    ]
    await MaxCompletionTokens(app)(scope, _receiver(chunks), _noop_send)
    (seen_scope, seen_body, after) = app.calls[0]
    assert json.loads(seen_body) == {"model": "m", "max_tokens": 4}
    assert dict(seen_scope["headers"]) == {b"x-a": b"1", b"content-length": b"%d" % len(seen_body)}
    assert after == {"type": "http.disconnect"}  # later receives reach the real client


async def test_middleware_passes_other_requests_through() -> None:
    app = Recorder()
    get = {"type": "http", "method": "GET", "headers": []}
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    await MaxCompletionTokens(app)(get, _receiver(messages), _noop_send)
    assert app.calls[0][0] == get and app.calls[0][1] == b""  # untouched
    gone = {"type": "http", "method": "POST", "headers": []}
    await MaxCompletionTokens(app)(gone, _receiver([{"type": "http.disconnect"}]), _noop_send)
    assert len(app.calls) == 1  # the client left before its body: the app is not called


def test_patch_create_app_wraps_every_app() -> None:
    inner = object()
    module = SimpleNamespace(create_app=lambda *a, **kw: (a, kw, inner))
    patch_create_app(module)
    app = module.create_app(1, settings="s")
    assert isinstance(app, MaxCompletionTokens) and app.app == ((1,), {"settings": "s"}, inner)


def test_patch_model_params_turns_extra_buffers_off() -> None:
    made = SimpleNamespace(use_extra_bufts=True, n_gpu_layers=0)
    module = SimpleNamespace(llama_model_default_params=lambda: made)
    patch_model_params(module)
    params = module.llama_model_default_params()
    assert params is made and params.use_extra_bufts is False and params.n_gpu_layers == 0


def test_command_starts_this_module_with_python_m(tmp_path: Path) -> None:
    argv = command(
        tmp_path / "m.gguf", model_alias="smol", host="127.0.0.1", port=8080, n_ctx=512, n_threads=1
    )
    assert argv[:3] == [sys.executable, "-m", "datashunt.llm.server_app"]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options["--model"] == str(tmp_path / "m.gguf") and options["--port"] == "8080"
    assert options["--model_alias"] == "smol" and options["--logits_all"] == "true"


def test_missing_modules_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_app.importlib.util, "find_spec", lambda name: None)
    assert "llama_cpp" in server_app.missing_modules()


# A stand-in llama_cpp: its server's __main__ prints what the real one would serve.
FAKE_APP = "def create_app(**kwargs):\n    return 'the llama.cpp app'\n"
FAKE_NATIVE = (
    "from types import SimpleNamespace\n"
    "def llama_model_default_params():\n"
    "    return SimpleNamespace(use_extra_bufts=True)\n"
)
FAKE_MAIN = (
    "import sys\n"
    "from llama_cpp.llama_cpp import llama_model_default_params\n"
    "from llama_cpp.server.app import create_app\n"
    "app = create_app()\n"
    "print(type(app).__name__, app.app, sys.argv[1:], llama_model_default_params())\n"
)


def test_python_m_runs_the_llama_cpp_server_behind_the_middleware(tmp_path: Path) -> None:
    pkg = tmp_path / "llama_cpp" / "server"
    pkg.mkdir(parents=True)
    (tmp_path / "llama_cpp" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(FAKE_APP)
    (pkg / "__main__.py").write_text(FAKE_MAIN)
    (tmp_path / "llama_cpp" / "llama_cpp.py").write_text(FAKE_NATIVE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", "datashunt.llm.server_app", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "MaxCompletionTokens the llama.cpp app ['--port', '1'] namespace(use_extra_bufts=False)"
    )
    assert out.stderr == ""
