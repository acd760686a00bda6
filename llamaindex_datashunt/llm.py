"""DataShuntLLM: a LlamaIndex ``LLM`` that answers classification calls with the gate if it can."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

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

from datashunt import InputError, Shunt, ShuntResult
from datashunt.adapters import CallFor, Item, render_prompt, result_summary

from ._runner import LlamaIndexCall, ShuntRunner, to_message

__all__ = ["DEFAULT_INSTRUCTION", "DataShuntLLM"]

#: Injected into the system message (chat) or before the prompt (complete) for uncertain
#: inputs. Variables: the shunt's (``candidates``, ``hint``, ``labels``, ``text``, ...).
DEFAULT_INSTRUCTION = (
    "Classify the user's text into exactly one of these labels: {candidates}.\n"
    "{hint}"
    "Answer with the label only."
)

TextFrom = Callable[[Sequence[ChatMessage]], str]
R = TypeVar("R", ChatResponse, CompletionResponse)


def last_user_text(messages: Sequence[ChatMessage], *, images: bool = False) -> str:
    """The text of the last user message (with ``images``, its first image as a data URL, for
    an image gate): what the gate classifies by default.

    Raises:
        InputError: there is no user message with text.
    """
    for m in reversed(messages):
        parts = to_message(m).images if images and m.role == MessageRole.USER else ()
        if parts:  # an image gate classifies the image in the message
            return parts[0].data_url
        if m.role == MessageRole.USER and m.content:
            return m.content
    raise InputError(
        "DataShuntLLM classifies the last user message and found none with text: "
        "send one, or pass text_from= to pick the text to classify"
    )


class DataShuntLLM(LLM):
    """Wrap any LlamaIndex LLM so that classification calls go through the gate first.

    Every form (chat, complete, async, streaming) runs the same steps; a stream yields the
    label as one chunk. The response text is always a label. ``response.raw`` holds the
    :class:`~datashunt.ShuntResult`; ``response.additional_kwargs["datashunt"]`` a JSON-ready
    summary (route, source, confidences, record id). LLM calls are recorded once in the
    shunt's store; confident answers too when the shunt records small answers.

    Args:
        llm: the wrapped LLM, called only for uncertain inputs.
        shunt: the core shunt (gate, policy, prompt mode, store).
        instruction: the text injected for uncertain inputs (see :data:`DEFAULT_INSTRUCTION`).
        text_from: picks the text to classify from chat messages (default: the last user
            message). ``complete`` classifies the whole prompt.

    Example:
        >>> llm = DataShuntLLM(llm=OpenAI(model="gpt-4o-mini"), shunt=shunt)  # doctest: +SKIP
        >>> llm.complete("Great blender, works fine.").text  # doctest: +SKIP
        'positive'
    """

    llm: SerializeAsAny[LLM]
    instruction: str = DEFAULT_INSTRUCTION
    text_from: TextFrom | None = Field(default=None, exclude=True)
    _runner: ShuntRunner = PrivateAttr()

    def __init__(self, llm: LLM, shunt: Shunt, **kwargs: Any) -> None:
        runner = ShuntRunner(shunt, llm)  # (``instruction``, ``text_from``: in ``kwargs``)
        # pydantic fields: mypy sees LLM's own __init__ signature, not the model's fields
        super().__init__(llm=llm, **kwargs)  # type: ignore[call-arg]
        self._runner = runner

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntLLM"

    @property
    def shunt(self) -> Shunt:
        """The core shunt."""
        return self._runner.shunt

    @property
    def metadata(self) -> LLMMetadata:
        # The wrapped model's metadata, except function calling: this class answers with a
        # label and has no tool-calling API, so structured_predict must not choose that path.
        return self.llm.metadata.model_copy(update={"is_function_calling_model": False})

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(self._runner.answer(*self._chat(messages, kwargs)))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat_response(await self._runner.aanswer(*self._chat(messages, kwargs)))

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        yield _streamed(self.chat(messages, **kwargs))

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return _later(lambda: self.achat(messages, **kwargs))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _completion(self._runner.answer(*self._complete(prompt, formatted, kwargs)))

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return _completion(await self._runner.aanswer(*self._complete(prompt, formatted, kwargs)))

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield _streamed(self.complete(prompt, formatted, **kwargs))

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return _later(lambda: self.acomplete(prompt, formatted, **kwargs))

    # ---- the steps: what the gate classifies and how the LLM is called; the engine runs them --

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> tuple[str, CallFor]:
        def call(item: Item) -> LlamaIndexCall:
            assert item.request is not None  # noqa: S101 - asked items carry a request
            instruction = render_prompt(self.instruction, item.request.variables)
            sent = _with_system(list(messages), instruction)
            return LlamaIndexCall(self.llm, messages=sent, **kwargs)

        pick = self.text_from or partial(last_user_text, images=self.shunt.takes_images)
        return pick(messages), call

    def _complete(
        self, prompt: str, formatted: bool, kwargs: dict[str, Any]
    ) -> tuple[str, CallFor]:
        def call(item: Item) -> LlamaIndexCall:
            assert item.request is not None  # noqa: S101 - asked items carry a request
            sent = f"{render_prompt(self.instruction, item.request.variables)}\n\n{prompt}"
            return LlamaIndexCall(self.llm, prompt=sent, formatted=formatted, **kwargs)

        return prompt, call


def _with_system(messages: list[ChatMessage], instruction: str) -> list[ChatMessage]:
    """The messages with the instruction merged into the (first) system message."""
    if messages and messages[0].role == MessageRole.SYSTEM:
        merged = f"{messages[0].content or ''}\n\n{instruction}".strip()
        return [ChatMessage(role=MessageRole.SYSTEM, content=merged), *messages[1:]]
    return [ChatMessage(role=MessageRole.SYSTEM, content=instruction), *messages]


def _chat_response(result: ShuntResult) -> ChatResponse:
    message = ChatMessage(role=MessageRole.ASSISTANT, content=result.label)
    return ChatResponse(message=message, raw=result, additional_kwargs=_summary(result))


def _completion(result: ShuntResult) -> CompletionResponse:
    return CompletionResponse(text=result.label, raw=result, additional_kwargs=_summary(result))


def _summary(result: ShuntResult) -> dict[str, Any]:
    return {"datashunt": result_summary(result)}


def _streamed(response: R) -> R:
    """The response as a stream's one chunk: its delta is the whole label."""
    return response.model_copy(update={"delta": cast(ShuntResult, response.raw).label})


async def _later(answer: Callable[[], Awaitable[R]]) -> AsyncGenerator[R, None]:
    """An async stream of one chunk; ``answer`` is awaited when the stream is first read."""
    yield _streamed(await answer())
