"""``DataShuntGenerativeLLM``: the LlamaIndex ``LLM`` over a small and a large model, routed by
the small answer's sequence confidence (the core's :class:`~datashunt.generative.GenerativeShunt`
judges, keeps or escalates, retries and records; this module only calls the LlamaIndex models).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
from datashunt.generative import GenerativePolicy, GenerativeResult, GenerativeShunt
from datashunt.store import CallStore

from ._replies import to_reply
from ._runner import recorded_scope, to_message

__all__ = ["DataShuntGenerativeLLM"]


class DataShuntGenerativeLLM(LLM):
    """A small LLM answers first; the large one when the small answer's confidence is below δ.

    The small LLM must return token logprobs (an OpenAI-compatible one with ``logprobs=True``,
    e.g. :class:`llamaindex_datashunt.OpenAICompatLLM` against the local server). ``chat``,
    ``complete`` and their async and streaming forms all run the same steps; a stream yields
    the chosen answer as one chunk. Every escalation is recorded in ``store``.

    Args:
        small: the small LLM (logprobs on).
        large: the large LLM.
        policy: the measure and δ (``datashunt.generative.calibrate_generative``).
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        record_small: also record small answers that stood.
        retry: how failed large calls are retried.
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
        return _chat_response(self._run(list(messages), kwargs))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(await self._arun(list(messages), kwargs))

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            response = self.chat(messages, **kwargs)
            yield response.model_copy(update={"delta": response.message.content})

        return gen()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            response = await self.achat(messages, **kwargs)
            yield response.model_copy(update={"delta": response.message.content})

        return gen()

    # ---- complete: one user message -----------------------------------------------------------

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _completion_response(self._run(_user(prompt), kwargs))

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion_response(await self._arun(_user(prompt), kwargs))

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            response = self.complete(prompt, **kwargs)
            yield response.model_copy(update={"delta": response.text})

        return gen()

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            response = await self.acomplete(prompt, **kwargs)
            yield response.model_copy(update={"delta": response.text})

        return gen()

    # ---- the steps: sync and async differ only in the awaited calls ---------------------------

    def _run(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> GenerativeResult:
        core = tuple(to_message(m) for m in messages)
        small = _reply(self.small.chat(messages, **kwargs))
        judgement = self._shunt.judge(small)
        if judgement.accept:
            return self._shunt.keep(core, small, judgement)

        def send() -> LLMReply:
            with recorded_scope():  # the handler must not record it a second time
                return _reply(self.large.chat(messages, **kwargs))

        return self._shunt.escalate(core, small, judgement, send)

    async def _arun(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> GenerativeResult:
        core = tuple(to_message(m) for m in messages)
        small = _reply(await self.small.achat(messages, **kwargs))
        judgement = self._shunt.judge(small)
        if judgement.accept:
            return await asyncio.to_thread(self._shunt.keep, core, small, judgement)

        async def send() -> LLMReply:
            with recorded_scope():
                return _reply(await self.large.achat(messages, **kwargs))

        return await self._shunt.aescalate(core, small, judgement, send)


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
        "small_answer": result.small.text,
        "error": result.error,
        "record_id": result.record_id,
    }


def _chat_response(result: GenerativeResult) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
        raw=result,
        additional_kwargs={"datashunt": _summary(result)},
    )


def _completion_response(result: GenerativeResult) -> CompletionResponse:
    return CompletionResponse(
        text=result.text, raw=result, additional_kwargs={"datashunt": _summary(result)}
    )
