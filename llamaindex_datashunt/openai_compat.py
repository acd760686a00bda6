"""OpenAILikeLLM: a LlamaIndex ``LLM`` over any OpenAI-compatible chat-completions API, a facade
over the core's :class:`datashunt.llm.OpenAICompatLLM` (``llama-index-llms-openai-like`` pins
the ``openai`` package the LangChain adapter shares)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from llama_index.core.base.llms.generic_utils import prompt_to_messages
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
from pydantic import Field, PrivateAttr

from datashunt import LLMReply
from datashunt.adapters import completion_body
from datashunt.llm.wire import ReplyAccumulator, as_wire
from datashunt.types import Message

from ._runner import to_message

if TYPE_CHECKING:  # the openai SDK loads on the first request, not with the adapter
    from datashunt.llm import OpenAICompatLLM

__all__ = ["OpenAILikeLLM"]


class OpenAILikeLLM(LLM):
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
        LLMError: the server answered an HTTP error (``status``, ``retry_after`` set) or could
            not be reached (``retryable``): the shunt's ``RetryPolicy`` retries it.

    Example:
        >>> with LLMServer() as server:  # doctest: +SKIP
        ...     llm = OpenAILikeLLM(model=server.model_name, api_base=server.base_url)
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

    _client: OpenAICompatLLM | None = PrivateAttr(default=None)
    _client_key: tuple[Any, ...] = PrivateAttr(default=())

    @classmethod
    def class_name(cls) -> str:
        return "OpenAILikeLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens or -1,
            is_chat_model=True,
            model_name=self.model,
        )

    def _core(self) -> OpenAICompatLLM:
        """The core client for the current connection settings (rebuilt when they change)."""
        from datashunt.llm import OpenAICompatLLM

        key = (self.api_base, self.api_key, self.timeout, self.transport, self.async_transport)
        if self._client is None or self._client_key != key:
            sync, aio = self.transport, self.async_transport
            self._client = OpenAICompatLLM(
                self.api_base,
                self.model,
                api_key=self.api_key,
                timeout=self.timeout,
                http_client=httpx.Client(transport=sync) if sync else None,
                async_http_client=httpx.AsyncClient(transport=aio) if aio else None,
            )
            self._client_key = key
        return self._client

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # Sampling settings travel with each call, so a field changed after the first call
        # counts; None leaves a field out of the request.
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "logprobs": True if self.logprobs else None,
            "top_logprobs": self.top_logprobs if self.logprobs else None,
            **self.additional_kwargs,
            **kwargs,
        }

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
        return _completion(self._chat(prompt_to_messages(prompt), kwargs))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion(await self._achat(prompt_to_messages(prompt), kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield from map(_completion, self._stream_chat(prompt_to_messages(prompt), kwargs))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return _completions(self._astream_chat(prompt_to_messages(prompt), kwargs))

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        return _chat_response(self._core().chat(_messages(messages), **self._options(kwargs)))

    async def _achat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        return _chat_response(
            await self._core().achat(_messages(messages), **self._options(kwargs))
        )

    def _stream_chat(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponseGen:
        acc = ReplyAccumulator()
        for delta in self._core().stream_chat(_messages(messages), **self._options(kwargs)):
            yield _stream_response(acc.add(delta), delta)

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponseAsyncGen:
        acc = ReplyAccumulator()
        async for delta in self._core().astream_chat(_messages(messages), **self._options(kwargs)):
            yield _stream_response(acc.add(delta), delta)


def _messages(messages: Sequence[ChatMessage]) -> list[Message]:
    # an ImageBlock travels as an image part (sent as an OpenAI image_url)
    return [to_message(m) for m in messages]


def _li_logprobs(content: Any) -> list[list[LogProb]] | None:
    """OpenAI ``logprobs.content`` as LlamaIndex's per-position alternatives."""
    if not isinstance(content, list) or not content:
        return None
    alternatives = [entry.get("top_logprobs") or [entry] for entry in content]
    return [
        [LogProb(token=t.get("token") or "", logprob=float(t.get("logprob") or 0.0)) for t in tops]
        for tops in alternatives
    ]


def _chat_response(reply: LLMReply) -> ChatResponse:
    data = as_wire(reply.raw)  # the body as the server sent it
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=reply.text),
        raw=data,
        logprobs=_li_logprobs(reply.logprobs),
        additional_kwargs=dict(data.get("usage") or {}) if isinstance(data, dict) else {},
    )


def _stream_response(so_far: LLMReply, delta: LLMReply) -> ChatResponse:
    """The running response of a stream; its ``raw`` is the whole answer so far."""
    choices = getattr(delta.raw, "choices", None) or [None]
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far.text),
        delta=delta.text,
        raw=completion_body(so_far, getattr(choices[0], "finish_reason", None)),
        logprobs=_li_logprobs(so_far.logprobs),
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


async def _completions(responses: ChatResponseAsyncGen) -> CompletionResponseAsyncGen:
    async for r in responses:
        yield _completion(r)
