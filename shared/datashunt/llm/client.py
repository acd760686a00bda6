"""One client for any OpenAI-compatible chat-completions API, on the ``openai`` SDK.

The core's own "ask the LLM" callable (``LLMRequest -> LLMReply``) for jobs that need no
framework (calibration with the LLM in the loop, benchmarks, distillation data), and the wire
under the LlamaIndex adapter's ``OpenAILikeLLM``. The SDK does the HTTP, the server-sent
events and the error types. On top: every failure is an :class:`LLMError` with ``status`` and
``retry_after``, so that one :class:`RetryPolicy` retries it (the SDK's retries are off,
``max_retries=0``: each attempt is counted once), and every answer is an :class:`LLMReply`.

The body is built here, not from the SDK's typed parameters: llama.cpp's server ignores
``max_completion_tokens``, so ``max_tokens`` goes out, and any field a server understands
(``seed``, ``stop``, ``top_k``...) passes through unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, LLMError
from ..types import LLMReply, LLMRequest, Message
from .retry import retry_after_of, time_left
from .wire import as_wire, http_error_message, parse_chunk, parse_completion

try:
    import openai
except ImportError as exc:  # pragma: no cover - openai is a core dependency
    raise ImportError(
        "datashunt.llm.OpenAICompatLLM needs the openai SDK: pip install 'openai>=1.40'"
    ) from exc

__all__ = ["OpenAICompatLLM"]

# What the SDK raises for a failed exchange (it wraps its HTTP library's errors, also those of a
# broken stream) and what a body that is not JSON raises; anything else is a bug and propagates.
_WIRE_ERRORS = (openai.APIError, json.JSONDecodeError, UnicodeDecodeError)
# Sent when no key is given (the SDK insists on one); local servers accept anything.
_NO_KEY = "local"


class OpenAICompatLLM:
    """Calls ``{base_url}/chat/completions``: sync, async and streamed, through the openai SDK.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name sent in the request.
        api_key: bearer token; default ``$OPENAI_API_KEY``, else ``"local"`` (local servers
            accept anything).
        max_tokens: answer length cap (labels are short); ``None`` leaves it to the server.
        temperature: sampling temperature (0: greedy, reproducible labels).
        top_logprobs: alternatives per token (0 disables logprobs).
        timeout: seconds per request at most; under a :class:`RetryPolicy` with a deadline
            (30 s by default) each request gets what is left of it, if that is less.
        http_client: an ``httpx.Client`` (or ``httpx2.Client``, what openai 3 uses) for the
            sync calls: a proxy, a mock transport. Its owner closes it.
        async_http_client: an ``httpx.AsyncClient`` for the async calls. Without one, each
            async call opens and closes its own, so that no connection outlives its event loop
            (an ``asyncio.run`` per batch would otherwise leave them to the garbage collector).
        extra_body: more request fields, sent with every call (``seed``, ``stop``...).

    Raises:
        ConfigError: ``base_url`` is not an http(s) URL.

    Example:
        >>> llm = OpenAICompatLLM("http://127.0.0.1:8080/v1", "smollm2")  # doctest: +SKIP
        >>> Shunt(gate, policy, llm=llm, allm=llm.acall).run("...")  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int | None = 8,
        temperature: float = 0.0,
        top_logprobs: int = 5,
        timeout: float = 30.0,
        http_client: Any = None,
        async_http_client: Any = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or _NO_KEY
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._client: openai.OpenAI | None = None
        self._shared_aclient: openai.AsyncOpenAI | None = None
        self._ssl: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatLLM({self.base_url!r}, {self.model!r})"

    # ---- pure: the body, the reply, the error -------------------------------------------------

    def payload(
        self, messages: str | Sequence[Message], *, stream: bool = False, **overrides: Any
    ) -> dict[str, Any]:
        """The JSON body for a prompt (one user message) or a list of messages.

        ``overrides`` replace fields (``max_tokens=2``, ``stop=[...]``); a ``None`` override
        leaves the field out.
        """
        if isinstance(messages, str):
            messages = [Message("user", messages)]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_wire() for m in messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }
        if self.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        body.update(self.extra_body)
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def _reply(self, completion: Any) -> LLMReply:
        # (a str: the SDK hands back the text of an answer that is not JSON)
        reply = parse_completion(as_wire(completion), self.url)
        return dataclasses.replace(reply, raw=completion)

    def _delta(self, chunk: Any) -> LLMReply:
        data = as_wire(chunk)
        if not isinstance(data, Mapping):
            raise LLMError(f"{self.url} streamed a malformed chunk: {data!r:.200}", retryable=True)
        return dataclasses.replace(parse_chunk(data), raw=chunk)

    def _error(self, exc: BaseException) -> LLMError:
        """What went wrong, what to do, and what :class:`RetryPolicy` needs to decide."""
        if isinstance(exc, openai.APIStatusError):
            detail = _body_text(exc.response) or exc.message
            return LLMError(
                http_error_message(exc.status_code, detail, self.url),
                status=exc.status_code,
                retry_after=retry_after_of(exc),
            )
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(
                f"{self.url} did not answer within {self.timeout:g}s or the call's deadline "
                "(raise timeout= or RetryPolicy(deadline=) for a slow model or a long answer)",
                retryable=True,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            return LLMError(
                f"could not reach {self.url} ({why}); is the server running?", retryable=True
            )
        if isinstance(exc, ValueError | openai.APIResponseValidationError):
            return LLMError(f"{self.url} answered with invalid JSON: {exc}", retryable=True)
        return LLMError(f"{self.url} failed: {type(exc).__name__}: {exc}")

    # ---- clients: the SDK's retries are off, RetryPolicy counts every attempt ---------------

    def _sync(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(**self._sdk_options(self._http_client))
            return self._client

    @contextlib.asynccontextmanager
    async def _async(self) -> AsyncIterator[openai.AsyncOpenAI]:
        if self._async_http_client is not None:  # the caller's: its owner closes it
            if self._shared_aclient is None:
                self._shared_aclient = openai.AsyncOpenAI(
                    **self._sdk_options(self._async_http_client)
                )
            yield self._shared_aclient
            return
        if self._ssl is None:  # the costly part of a new client (~20 ms): made once
            self._ssl = ssl.create_default_context()
        client = openai.AsyncOpenAI(
            **self._sdk_options(openai.DefaultAsyncHttpxClient(verify=self._ssl))
        )
        try:
            yield client
        finally:
            await client.close()

    def _sdk_options(self, http_client: Any) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "max_retries": 0,
            "http_client": http_client,  # None: the SDK's own
        }

    def close(self) -> None:
        """Close the sync connection pool (a client passed in is left to its owner)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._http_client is None:
            client.close()

    def __enter__(self) -> OpenAICompatLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- I/O: the only lines sync and async do not share -------------------------------------

    def __call__(self, request: LLMRequest) -> LLMReply:
        """Ask with the request's prompt as one user message."""
        return self.chat([Message("user", request.prompt)])

    async def acall(self, request: LLMRequest) -> LLMReply:
        """Async :meth:`__call__`."""
        return await self.achat([Message("user", request.prompt)])

    def chat(self, messages: Sequence[Message], **overrides: Any) -> LLMReply:
        """One chat completion.

        Raises:
            LLMError: the server answered an error, could not be reached, or sent no answer.
        """
        create = _sdk_args(self.payload(messages, **overrides), self.timeout)
        try:
            completion = self._sync().chat.completions.create(**create)
        except _WIRE_ERRORS as exc:
            raise self._error(exc) from exc
        return self._reply(completion)

    async def achat(self, messages: Sequence[Message], **overrides: Any) -> LLMReply:
        """Async :meth:`chat`."""
        create = _sdk_args(self.payload(messages, **overrides), self.timeout)
        try:
            async with self._async() as client:
                completion = await client.chat.completions.create(**create)
        except _WIRE_ERRORS as exc:
            raise self._error(exc) from exc
        return self._reply(completion)

    def stream_chat(self, messages: Sequence[Message], **overrides: Any) -> Iterator[LLMReply]:
        """Stream a chat completion: one :class:`LLMReply` per chunk, holding only the delta
        (:class:`~datashunt.llm.wire.ReplyAccumulator` joins them). Sent on first iteration.

        Raises:
            LLMError: as :meth:`chat`, also when the stream breaks midway.
        """
        create = _sdk_args(self.payload(messages, stream=True, **overrides), self.timeout)
        try:
            with self._sync().chat.completions.create(**create) as stream:
                for chunk in stream:
                    yield self._delta(chunk)
        except _WIRE_ERRORS as exc:
            raise self._error(exc) from exc

    async def astream_chat(
        self, messages: Sequence[Message], **overrides: Any
    ) -> AsyncIterator[LLMReply]:
        """Async :meth:`stream_chat`."""
        create = _sdk_args(self.payload(messages, stream=True, **overrides), self.timeout)
        try:
            async with self._async() as client:
                stream = await client.chat.completions.create(**create)
                async with stream:
                    async for chunk in stream:
                        yield self._delta(chunk)
        except _WIRE_ERRORS as exc:
            raise self._error(exc) from exc


def _sdk_args(body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``create(...)`` arguments: the SDK's required ones, every other field as is, and the
    request's timeout when a deadline leaves less than the client's own."""
    rest = dict(body)
    args = {
        "model": rest.pop("model"),
        "messages": rest.pop("messages"),
        "stream": rest.pop("stream"),
        "extra_body": rest,
    }
    left = time_left()
    if left is not None and left < timeout:
        args["timeout"] = max(left, 0.001)  # the SDK's per-request option; 0 would mean none
    return args


def _body_text(response: Any) -> str:
    try:
        return str(response.text).strip()
    except Exception:  # a streamed error body nobody read (httpx.ResponseNotRead)
        return ""
