"""``DataShuntGenerativeLLM``: the LlamaIndex ``LLM`` over a small and a large model, routed by
the small answer's sequence confidence (the core's :class:`~datashunt.generative.GenerativeShunt`
judges, keeps or escalates, retries and records; this module only calls the LlamaIndex models).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import LLM
from pydantic import Field, PrivateAttr, SerializeAsAny

from datashunt import LLMReply, RetryPolicy
from datashunt.adapters import Message, ModelCall
from datashunt.generative import GenerativePolicy, GenerativeResult, GenerativeShunt
from datashunt.store import CallStore

from ._replies import to_reply
from ._runner import recorded_scope, to_message

__all__ = ["DataShuntGenerativeLLM"]


class DataShuntGenerativeLLM(LLM):
    """A small LLM answers first; the large one when the small answer's confidence is below δ.

    The small LLM must return token logprobs (an OpenAI-compatible one with ``logprobs=True``,
    e.g. :class:`llamaindex_datashunt.OpenAICompatLLM` against the local server). ``chat``,
    ``complete`` and their async and streaming forms all run the same steps; a stream sends the
    large model's answer as it comes, or the kept small answer as one chunk, and ends with a
    response holding the whole answer and the route. Every escalation is recorded in ``store``.

    Args:
        small: the small LLM (logprobs on).
        large: the large LLM.
        policy: the measure and δ (``datashunt.generative.calibrate_generative``).
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        record_small: also record small answers that stood.
        retry: how failed calls (small and large) are retried.
        on_llm_error: ``"fallback"`` (the small answer) or ``"raise"``.

    Example:
        >>> llm = DataShuntGenerativeLLM(small=local, large=OpenAI(model="gpt-4o-mini"),
        ...                              policy=GenerativePolicy("mean", 0.7))  # doctest: +SKIP
        >>> llm.complete("Capital of France?").text  # doctest: +SKIP
    """

    small: SerializeAsAny[LLM] = Field(description="The small LLM, asked first.")
    large: SerializeAsAny[LLM] = Field(description="The large LLM, asked when unsure.")
    _shunt: GenerativeShunt = PrivateAttr()

    def __init__(
        self,
        small: LLM,
        large: LLM,
        *,
        policy: GenerativePolicy | None = None,
        store: CallStore | str | Path | None = None,
        record_small: bool = False,
        retry: RetryPolicy | None = None,
        on_llm_error: str = "fallback",
        **kwargs: Any,
    ) -> None:
        for name, llm in (("small", small), ("large", large)):
            if not isinstance(llm, LLM):
                raise TypeError(f"{name} must be a LlamaIndex LLM, got {type(llm).__name__}")
        super().__init__(small=small, large=large, **kwargs)  # type: ignore[call-arg]
        self._shunt = GenerativeShunt(
            policy,
            store=store,
            record_small=record_small,
            retry=retry,
            on_llm_error=on_llm_error,  # type: ignore[arg-type]
            model_name=getattr(large.metadata, "model_name", None) or None,
        )

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntGenerativeLLM"

    @property
    def shunt(self) -> GenerativeShunt:
        """The core's generative gate (policy, store)."""
        return self._shunt

    @property
    def metadata(self) -> LLMMetadata:
        # the large model's: tool calling and structured output are its job
        return self.large.metadata

    # ---- chat ---------------------------------------------------------------------------------

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(self._shunt.ask(*self._calls(messages, kwargs)))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(await self._shunt.aask(*self._calls(messages, kwargs)))

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            for item in self._shunt.stream(*self._calls(messages, kwargs)):
                yield _closing(item) if isinstance(item, GenerativeResult) else item

        return gen()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            async for item in self._shunt.astream(*self._calls(messages, kwargs)):
                yield _closing(item) if isinstance(item, GenerativeResult) else item

        return gen()

    # ---- complete: one user message -----------------------------------------------------------

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _completion(self.chat(_user(prompt), **kwargs))

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion(await self.achat(_user(prompt), **kwargs))

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for response in self.stream_chat(_user(prompt), **kwargs):
                yield _completion(response)

        return gen()

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            async for response in await self.astream_chat(_user(prompt), **kwargs):
                yield _completion(response)

        return gen()

    # ---- the calls: the shunt times, retries, judges and records them -------------------------

    def _calls(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[tuple[Message, ...], list[ChatMessage], _ChatCall, _ChatCall]:
        core = tuple(to_message(m) for m in messages)
        # the large call is recorded by the shunt: the handler must not record it a second time
        small, large = _ChatCall(self.small, kwargs, False), _ChatCall(self.large, kwargs, True)
        return core, list(messages), small, large


class _ChatCall(ModelCall[list[ChatMessage]]):
    """One LlamaIndex LLM's chat (streamed responses are cumulative: the last one is whole)."""

    def __init__(self, llm: LLM, kwargs: dict[str, Any], recorded: bool) -> None:
        self.llm, self.kwargs, self.recorded = llm, kwargs, recorded
        self.model_name = getattr(llm.metadata, "model_name", None) or None

    def _scope(self) -> AbstractContextManager[None]:
        return recorded_scope() if self.recorded else nullcontext()

    def send(self, payload: list[ChatMessage]) -> LLMReply:
        with self._scope():
            return _reply(self.llm.chat(payload, **self.kwargs))

    async def asend(self, payload: list[ChatMessage]) -> LLMReply:
        with self._scope():
            return _reply(await self.llm.achat(payload, **self.kwargs))

    def stream(self, payload: list[ChatMessage]) -> Iterator[ChatResponse]:
        with self._scope():
            yield from self.llm.stream_chat(payload, **self.kwargs)

    async def astream(self, payload: list[ChatMessage]) -> AsyncIterator[ChatResponse]:
        with self._scope():
            async for response in await self.llm.astream_chat(payload, **self.kwargs):
                yield response

    def chunk_text(self, chunk: Any) -> str:
        return str(getattr(chunk, "delta", "") or "")

    def join(self, acc: Any, chunk: Any) -> Any:
        return chunk

    def reply(self, acc: Any) -> LLMReply:
        return _reply(acc)


def _user(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


def _reply(response: ChatResponse) -> LLMReply:
    return replace(to_reply(response), raw=response)


def _summary(result: GenerativeResult) -> dict[str, Any]:
    return {
        "route": result.route,
        "source": result.source,
        "score": result.judgement.score,
        "reason": result.judgement.reason,
        "small_answer": result.small.text if result.small is not None else None,
        "small_error": result.small_error,
        "error": result.error,
        "record_id": result.record_id,
    }


def _chat_response(result: GenerativeResult, delta: str | None = None) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
        raw=result,
        delta=delta,
        additional_kwargs={"datashunt": _summary(result)},
    )


def _closing(result: GenerativeResult) -> ChatResponse:
    """A stream's last response: the whole answer and the route (the large model's streamed
    text was sent already; a kept or fallback answer is sent whole here)."""
    return _chat_response(result, "" if result.source == "llm" else result.text)


def _completion(response: ChatResponse) -> CompletionResponse:
    return CompletionResponse(
        text=response.message.content or "",
        delta=response.delta,
        raw=response.raw,
        additional_kwargs=dict(response.additional_kwargs),
    )
