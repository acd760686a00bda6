"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an OpenAI-compatible server.

Each request takes the next fault from a schedule (then ``default``, ``"pass"`` unless given,
once the schedule is empty):

- ``"pass"``: forwarded to the upstream server, its answer relayed (streams chunk by chunk);
- ``"429"`` / ``"429:S"``: rate limited, without / with ``Retry-After: S``;
- ``"500"``, ``"503"``, ``"400"``, ...: that status with a JSON error body;
- ``"timeout:S"``: nothing for S seconds (the client's timeout should fire first), then closed;
- ``"drop"``: the connection is closed without an answer;
- ``"garbage"``: 200 with a body that is not JSON;
- ``"empty"``: 200 with a well-formed completion (or stream) whose answer is empty;
- ``"nochoices"``: 200 with a completion whose ``choices`` list is empty;
- ``"hang"``: 200 and stream headers, then nothing until the proxy stops;
- ``"hang-mid"``: 200, one streamed token, then nothing;
- ``"answer:TEXT"``: 200 with a well-formed completion (or stream) answering TEXT, with no
  upstream server at all.

Example:
    >>> with FaultProxy(server.base_url, ["429:0.2", "500"]) as proxy:  # doctest: +SKIP
    ...     llm = OpenAICompatLLM(proxy.base_url, "m")
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FaultProxy"]


class FaultProxy:
    """A ThreadingHTTPServer that injects faults by schedule and forwards the rest."""

    def __init__(
        self,
        upstream: str | None,
        schedule: Iterable[str] = (),
        port: int = 0,
        *,
        default: str = "pass",
        delay: float = 0.0,
    ) -> None:
        self.upstream = urlsplit(upstream) if upstream else None
        self.default = default  # the fault once the schedule is empty: "answer:X" answers X always
        self.delay = delay  # seconds each request waits before its fault (a slow provider)
        self.bodies: list[bytes] = []  # each request's body, in arrival order
        self._schedule: deque[str] = deque(schedule)
        self._lock = threading.Lock()
        self.log: list[str] = []  # the fault each request met, in arrival order
        self.released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                proxy._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.log)

    def push(self, *faults: str) -> None:
        """Append faults to the schedule."""
        with self._lock:
            self._schedule.extend(faults)

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()  # lets hanging handlers go
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- one request --------------------------------------------------------------------------

    def _next(self) -> str:
        with self._lock:
            fault = self._schedule.popleft() if self._schedule else self.default
            self.log.append(fault)
            return fault

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.bodies.append(body)
        fault = self._next()
        if self.delay:
            time.sleep(self.delay)
        kind, _, arg = fault.partition(":")
        try:
            stream = bool(json.loads(body or b"{}").get("stream"))
        except ValueError:
            stream = False
        try:
            if kind == "pass":
                self._forward(h, body)
            elif kind.isdigit():
                headers = {"Retry-After": arg} if arg else {}
                error = {"error": {"message": f"injected {kind}", "type": "injected"}}
                self._send(h, int(kind), json.dumps(error).encode(), headers)
            elif kind == "timeout":
                self.released.wait(float(arg or 30))
                h.close_connection = True
            elif kind == "drop":
                h.close_connection = True
            elif kind == "garbage":
                self._send(h, 200, b"<html>upstream gateway says hello</html>")
            elif kind == "empty":
                self._answer(h, stream, "")
            elif kind == "nochoices":
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": "m"}
                self._send(h, 200, json.dumps({**reply, "choices": []}).encode())
            elif kind == "answer":
                self._answer(h, stream, arg)
            elif kind in ("hang", "hang-mid"):
                self._stream_headers(h)
                if kind == "hang-mid":
                    h.wfile.write(_sse(_chunk("posi")))
                    h.wfile.flush()
                self.released.wait(120)
                h.close_connection = True
            else:
                raise ValueError(f"unknown fault {fault!r}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as it should on a timeout

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, raw: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)

    @staticmethod
    def _stream_headers(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True

    def _answer(self, h: BaseHTTPRequestHandler, stream: bool, text: str) -> None:
        if not stream:
            body = {
                "id": "chatcmpl-empty",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "injected",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
            }
            self._send(h, 200, json.dumps(body).encode())
            return
        self._stream_headers(h)
        h.wfile.write(_sse(_chunk(text)) + b"data: [DONE]\n\n")
        h.wfile.flush()

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        if self.upstream is None:
            raise ValueError("a 'pass' needs an upstream server")
        conn = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=300
        )
        try:
            skip = {"host", "content-length", "connection", "accept-encoding"}
            headers = {k: v for k, v in h.headers.items() if k.lower() not in skip}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            h.send_response(resp.status)
            drop = {"content-length", "transfer-encoding", "connection", "server", "date"}
            for k, v in resp.getheaders():
                if k.lower() not in drop:
                    h.send_header(k, v)
            h.send_header("Connection", "close")  # the body ends when the connection does
            h.end_headers()
            h.close_connection = True
            while piece := resp.read1(65536):
                h.wfile.write(piece)
                h.wfile.flush()
        finally:
            conn.close()


def _chunk(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-injected",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "injected",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}],
    }


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
