"""The child process of :class:`~datashunt.llm.server.LLMServer`: llama.cpp's OpenAI-compatible
server (``llama_cpp.server``), which here also honours ``max_completion_tokens``.

Started as ``python -m datashunt.llm.server_app --model M.gguf --port P ...`` (the options are
``llama_cpp.server``'s own; :func:`command` builds them). langchain-openai 1.x and other current
OpenAI clients send ``max_completion_tokens``, which llama-cpp-python 0.3.x silently ignores: a
``max_tokens=5`` request would generate until EOS or ``n_ctx`` (and each token costs ~70 ms more
with logprobs on). :class:`MaxCompletionTokens`, a small ASGI middleware, renames the field
before the server parses the body. ``llama_cpp`` is imported only in :func:`main`, in the child.
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

__all__ = [
    "MaxCompletionTokens",
    "command",
    "main",
    "missing_modules",
    "patch_create_app",
    "patch_model_params",
    "rename_max_completion_tokens",
]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MODULE = "datashunt.llm.server_app"
_NEEDS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")


def missing_modules() -> list[str]:
    """The modules of ``llama-cpp-python[server]`` that are not installed (looked up, not
    imported: loading llama_cpp would cost the parent its native library)."""
    return [m for m in _NEEDS if importlib.util.find_spec(m) is None]


def rename_max_completion_tokens(body: bytes) -> bytes:
    """A JSON body with ``max_completion_tokens`` moved to ``max_tokens`` (which wins when both
    are set); any other body as it is."""
    try:
        data = json.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too): the server says so
        return body
    if not isinstance(data, dict) or "max_completion_tokens" not in data:
        return body
    value = data.pop("max_completion_tokens")
    if data.get("max_tokens") is None:
        data["max_tokens"] = value
    return json.dumps(data).encode()


class MaxCompletionTokens:
    """ASGI middleware: every POST body goes through :func:`rename_max_completion_tokens`.

    The body is read whole (requests are small), rewritten, and replayed to the app with a
    matching ``content-length``.

    Args:
        app: the ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            more = message.get("more_body", False)
        body = rename_max_completion_tokens(body)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> ASGIMessage:
            nonlocal replayed
            if replayed:
                return await receive()  # lets the server notice a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(dict(scope, headers=headers), replay, send)


def patch_create_app(module: Any) -> None:
    """Make ``module.create_app`` (``llama_cpp.server.app``'s) wrap each app it creates."""
    create_app = module.create_app

    def create_wrapped_app(*args: Any, **kwargs: Any) -> MaxCompletionTokens:
        return MaxCompletionTokens(create_app(*args, **kwargs))

    module.create_app = create_wrapped_app


def patch_model_params(module: Any) -> None:
    """Make ``module.llama_model_default_params`` (``llama_cpp.llama_cpp``'s) turn llama.cpp's
    extra weight buffers off (AMX tiles, runtime repacking).

    Built for a CPU that reports AMX, llama-cpp-python 0.3.36 dies (SIGSEGV in ``decode``) on
    any batch of more than one token where the machine does not let a process use AMX, as on
    this project's CPU-only machines: every chat completion. A small model loses nothing.
    """
    defaults = module.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        if hasattr(params, "use_extra_bufts"):  # llama-cpp-python >= 0.3.17
            params.use_extra_bufts = False
        return params

    module.llama_model_default_params = without_extra_buffers


def command(
    model_path: str | os.PathLike[str],
    *,
    model_alias: str,
    host: str,
    port: int,
    n_ctx: int,
    n_threads: int,
) -> list[str]:
    """The command line that starts this module as a server of ``model_path``."""
    return [
        sys.executable, "-m", MODULE,
        "--model", str(model_path),
        "--model_alias", model_alias,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        # Chat completions with logprobs raise unless the model keeps every token's logits.
        # 0.3.x servers default to true already; older ones did not, so say it.
        "--logits_all", "true",
        # By default a new request cuts a running *stream* short; requests should queue.
        "--interrupt_requests", "false",
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``llama_cpp.server`` (its own ``__main__`` and options) behind the middleware.

    Args:
        argv: ``llama_cpp.server``'s options; ``sys.argv[1:]`` when None.
    """
    import llama_cpp.llama_cpp as native  # here only: the parent never loads llama.cpp
    import llama_cpp.server.app as server_app

    patch_model_params(native)
    patch_create_app(server_app)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
