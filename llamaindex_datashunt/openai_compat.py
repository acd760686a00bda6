"""OpenAICompatibleLLM: a small LlamaIndex LLM over any OpenAI-compatible chat-completions API.

For local servers (``datashunt llm-server``, llama.cpp, vLLM, Ollama's ``/v1``). It exists
because ``llama-index-llms-openai-like`` pins ``openai<3`` and would downgrade the ``openai``
package the LangChain adapter shares; this class needs only ``httpx`` (a llama-index-core
dependency). It asks for token ``logprobs`` when ``logprobs=True``, so the shunt gets ``C_l``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import Field

from datashunt import LLMError

__all__ = ["OpenAICompatibleLLM"]


class OpenAICompatibleLLM(LLM):
    """Chat completions over HTTP (``POST {api_base}/chat/completions``), sync, async, streamed.

    Args:
        model: the model id the server knows.
        api_base: the base URL, e.g. ``http://127.0.0.1:8080/v1``.
        api_key: sent as a bearer token (local servers accept anything).
        temperature: sampling temperature (0: greedy, reproducible labels).
        max_tokens: answer length limit (None: the server's default).
        logprobs: ask for token logprobs (``top_logprobs`` alternatives per position).
        top_logprobs: alternatives per position when ``logprobs`` is on (0-20).
        timeout: seconds per request.
        context_window: reported in ``metadata``.
        additional_kwargs: extra request fields (``stop``, ``seed``, ...).
        transport: an httpx transport for the sync calls (``httpx.HTTPTransport(retries=2)``,
            or ``httpx.MockTransport`` in tests).
        async_transport: the same for the async calls.

    Raises:
        LLMError: the server answered an HTTP error or could not be reached.

    Example:
        >>> with LLMServer() as server:  # doctest: +SKIP
        ...     llm = OpenAICompatibleLLM(model=server.model_name, api_base=server.base_url)
        ...     llm.complete("Say hi").text
    """

    model: str = Field(description="The model id.")
    api_base: str = Field(description="Base URL of the OpenAI-compatible API.")
    api_key: str = Field(default="local", exclude=True, repr=False)
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int | None = Field(default=None, gt=0)
    logprobs: bool = False
    top_logprobs: int = Field(default=5, ge=0, le=20)
    timeout: float = Field(default=60.0, gt=0)
    context_window: int = Field(default=DEFAULT_CONTEXT_WINDOW, gt=0)
    additional_kwargs: dict[str, Any] = Field(default_factory=dict)
    transport: httpx.BaseTransport | None = Field(default=None, exclude=True, repr=False)
    async_transport: httpx.AsyncBaseTransport | None = Field(default=None, exclude=True, repr=False)

    @classmethod
    def class_name(cls) -> str:
        return "OpenAICompatibleLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens or -1,
            is_chat_model=True,
            model_name=self.model,
        )

    # ---- pure: request and response --------------------------------------------------------

    @property
    def _url(self) -> str:
        return self.api_base.rstrip("/") + "/chat/completions"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _payload(
        self, messages: Sequence[ChatMessage], stream: bool, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role.value, "content": m.content or ""} for m in messages],
            "temperature": self.temperature,
            "stream": stream,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        body.update(self.additional_kwargs)
        body.update(kwargs)
        return body

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            raise LLMError(f"{self._url} answered HTTP {resp.status_code}: {resp.text[:300]}")

    def _unreachable(self, exc: httpx.HTTPError) -> LLMError:
        return LLMError(
            f"could not reach {self._url} ({type(exc).__name__}: {exc}); is the server running?"
        )

    # ---- chat ---------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, kwargs)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return self._astream_chat(messages, kwargs)

    # ---- complete: one user message (not routed through the decorated chat: one event pair) --

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _completion(self._chat(_user(prompt), kwargs))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion(await self._achat(_user(prompt), kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for r in self._stream_chat(_user(prompt), kwargs):
                yield _completion(r)

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            async for r in self._astream_chat(_user(prompt), kwargs):
                yield _completion(r)

        return gen()

    # ---- I/O: the only lines sync and async do not share -----------------------------------

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, transport=self.transport)

    def _aclient(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self.async_transport)

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        body = self._payload(messages, False, kwargs)
        try:
            with self._client() as client:
                resp = client.post(self._url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(resp)
        return _chat_response(resp.json())

    async def _achat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        body = self._payload(messages, False, kwargs)
        try:
            async with self._aclient() as client:
                resp = await client.post(self._url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(resp)
        return _chat_response(resp.json())

    def _stream_chat(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponseGen:
        body = self._payload(messages, True, kwargs)
        acc = _Accumulator()
        try:
            with (
                self._client() as client,
                client.stream("POST", self._url, json=body, headers=self._headers) as resp,
            ):
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                for line in resp.iter_lines():
                    chunk = _sse_data(line)
                    if chunk is not None:
                        yield acc.add(chunk)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponseAsyncGen:
        body = self._payload(messages, True, kwargs)
        acc = _Accumulator()
        try:
            async with (
                self._aclient() as client,
                client.stream("POST", self._url, json=body, headers=self._headers) as resp,
            ):
                if resp.status_code >= 400:
                    await resp.aread()
                    self._check(resp)
                async for line in resp.aiter_lines():
                    chunk = _sse_data(line)
                    if chunk is not None:
                        yield acc.add(chunk)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc


def _user(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


def _sse_data(line: str) -> dict[str, Any] | None:
    """The JSON of one ``data:`` line of a server-sent event stream (None: other lines, DONE)."""
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if not data or data == "[DONE]":
        return None
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else None


def _li_logprobs(content: Any) -> list[list[LogProb]] | None:
    """OpenAI ``logprobs.content`` as LlamaIndex's per-position alternatives."""
    if not isinstance(content, list) or not content:
        return None
    out = []
    for entry in content:
        tops = entry.get("top_logprobs") or [entry]
        out.append(
            [
                LogProb(token=t.get("token") or "", logprob=float(t.get("logprob") or 0.0))
                for t in tops
            ]
        )
    return out


def _chat_response(data: dict[str, Any]) -> ChatResponse:
    choices = data.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content") or ""
    logprobs = (choice.get("logprobs") or {}).get("content")
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=content),
        raw=data,
        logprobs=_li_logprobs(logprobs),
        additional_kwargs=dict(data.get("usage") or {}),
    )


class _Accumulator:
    """Builds the running ChatResponse of a stream; its ``raw`` is the whole answer so far."""

    def __init__(self) -> None:
        self.text = ""
        self.logprobs: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

    def add(self, chunk: dict[str, Any]) -> ChatResponse:
        choice = (chunk.get("choices") or [{}])[0]
        delta = (choice.get("delta") or {}).get("content") or ""
        self.text += delta
        self.logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
        self.usage = chunk.get("usage") or self.usage
        self.model = chunk.get("model") or self.model
        raw = {
            "model": self.model,
            "choices": [
                {
                    "message": {"role": "assistant", "content": self.text},
                    "logprobs": {"content": list(self.logprobs)},
                    "finish_reason": choice.get("finish_reason"),
                }
            ],
            "usage": self.usage,
        }
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=self.text),
            delta=delta,
            raw=raw,
            logprobs=_li_logprobs(self.logprobs),
        )


def _completion(r: ChatResponse) -> CompletionResponse:
    # LlamaIndex's chat_response_to_completion_response drops logprobs; keep them.
    return CompletionResponse(
        text=r.message.content or "",
        raw=r.raw,
        delta=r.delta,
        logprobs=r.logprobs,
        additional_kwargs=dict(r.additional_kwargs),
    )
