"""``DataShuntGenerativeLLM``: the core's generative shunt over two LlamaIndex LLMs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
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

from datashunt.adapters import GenerativeAdapter, Message, generative_summary
from datashunt.generative import GenerativeResult, GenerativeShunt

from ._runner import LlamaIndexCall, require_llm, to_message

__all__ = ["DataShuntGenerativeLLM"]


class DataShuntGenerativeLLM(GenerativeAdapter, LLM):
    """A small LLM answers first; the large one when the small answer's confidence is below δ.

    The small LLM must return token logprobs (an OpenAI-compatible one with ``logprobs=True``,
    e.g. :class:`llamaindex_datashunt.OpenAILikeLLM` against the local server). ``chat``,
    ``complete`` and their async and streaming forms all run the same steps; a stream sends the
    large model's answer as it comes, or the kept small answer as one chunk, and ends with a
    response holding the whole answer and the route. Every escalation is recorded in the
    shunt's store.

    Args:
        small: the small LLM (logprobs on).
        large: the large LLM.
        shunt: the core's :class:`~datashunt.generative.GenerativeShunt` (policy, store, retry,
            ``on_llm_error``); or build one with :meth:`from_policy`, which takes its options
            (``store=``, ``record_small=``, ``retry=``, ``on_llm_error=``) as keywords.

    Example:
        >>> llm = DataShuntGenerativeLLM.from_policy(
        ...     GenerativePolicy("mean", 0.7), small=local, large=OpenAI(model="gpt-4o-mini")
        ... )  # doctest: +SKIP
        >>> llm.complete("Capital of France?").text  # doctest: +SKIP
    """

    small: SerializeAsAny[LLM] = Field(description="The small LLM, asked first.")
    large: SerializeAsAny[LLM] = Field(description="The large LLM, asked when unsure.")
    _shunt: GenerativeShunt = PrivateAttr()

    def __init__(
        self, small: LLM, large: LLM, shunt: GenerativeShunt | None = None, **kwargs: Any
    ) -> None:
        self.refuse_loose_options(kwargs)
        small, large = require_llm(small, "small"), require_llm(large, "large")
        super().__init__(small=small, large=large, **kwargs)  # type: ignore[call-arg]
        self._shunt = shunt if shunt is not None else GenerativeShunt()

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntGenerativeLLM"

    @property
    def shunt(self) -> GenerativeShunt:
        """The core's generative gate (policy, store, retry)."""
        return self._shunt

    @property
    def metadata(self) -> LLMMetadata:
        # the large model's: tool calling and structured output are its job
        return self.large.metadata

    # ---- chat: the shunt times, retries, judges and records both calls ------------------------

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(self._shunt.ask(*self._calls(messages, kwargs)))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(await self._shunt.aask(*self._calls(messages, kwargs)))

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        for item in self._shunt.stream(*self._calls(messages, kwargs)):
            yield _closing(item) if isinstance(item, GenerativeResult) else item

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            async for item in self._shunt.astream(*self._calls(messages, kwargs)):
                yield _closing(item) if isinstance(item, GenerativeResult) else item

        return gen()

    def _calls(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[tuple[Message, ...], list[ChatMessage], LlamaIndexCall, LlamaIndexCall]:
        # the large call is recorded by the shunt: the handler must not record it a second time
        small = LlamaIndexCall(self.small, recorded=False, **kwargs)
        large = LlamaIndexCall(self.large, **kwargs)
        return tuple(to_message(m) for m in messages), list(messages), small, large

    # ---- complete: one user message -----------------------------------------------------------

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)


def _chat_response(result: GenerativeResult, delta: str | None = None) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
        raw=result,
        delta=delta,
        additional_kwargs={"datashunt": generative_summary(result)},
    )


def _closing(result: GenerativeResult) -> ChatResponse:
    """A stream's last response: the whole answer and the route (the large model's streamed
    text was sent already; a kept or fallback answer is sent whole here)."""
    return _chat_response(result, "" if result.source == "llm" else result.text)
