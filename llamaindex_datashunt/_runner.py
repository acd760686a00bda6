"""What the LlamaIndex adapters share: how a LlamaIndex LLM is called (the engine times, retries,
parses and records the call), and their hold on the shunt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.llms import LLM
from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags

from datashunt import LLMReply, LLMRequest, Shunt
from datashunt.adapters import Message, ModelCall, Rendered, payload_reply
from datashunt.adapters import ShuntRunner as CoreRunner
from datashunt.images import ImagePart, image_input, image_part, is_image_input

from .events import watch_events

__all__ = ["RECORDED_TAG", "LlamaIndexCall", "ShuntRunner", "require_llm", "to_reply"]

#: Instrumentation tag on LLM events whose call datashunt records itself.
RECORDED_TAG = "datashunt.recorded"

Payload = list[ChatMessage] | str


@contextmanager
def _recorded_scope() -> Iterator[None]:
    """Tag the LLM events emitted inside as already recorded (the tags of the caller are kept)."""
    with instrument_tags({**active_instrument_tags.get(), RECORDED_TAG: True}):
        yield


class LlamaIndexCall(ModelCall[Payload]):
    """A LlamaIndex ``LLM``: a chat model gets ``messages`` (default: the request's prompt as
    one user message), a completion model gets the prompt; streamed, its chat responses are
    cumulative (the last one is whole).

    Args:
        llm: the LlamaIndex LLM.
        messages: the exact chat messages to send (e.g. with an injected system message).
        prompt: the completion prompt to send instead of the request's (completion models).
        recorded: the shunt records this call: its events are tagged so that
            :class:`DataShuntEventHandler` does not record it a second time.
        kwargs: passed to ``chat`` / ``complete``.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt: str | None = None,
        recorded: bool = True,
        **kwargs: Any,
    ) -> None:
        self.llm, self.messages, self.prompt, self.kwargs = llm, messages, prompt, kwargs
        self.model_name = getattr(llm.metadata, "model_name", None) or None
        self.scope = _recorded_scope if recorded else nullcontext

    def render(self, request: LLMRequest) -> Rendered[Payload]:
        image = is_image_input(request.text)
        if self.messages is not None:
            sent = list(self.messages)
        elif image or (self.prompt is None and self.llm.metadata.is_chat_model):
            # an image goes to the chat endpoint as an ImageBlock, whatever the model's kind
            sent = [ChatMessage(role=MessageRole.USER, content=self.prompt or request.prompt)]
        else:
            text = self.prompt if self.prompt is not None else request.prompt
            return Rendered(text, (Message("user", text),))
        if image:
            sent = with_image_block(sent, image_part(request.text))
        return Rendered(sent, tuple(to_message(m) for m in sent))

    def send(self, payload: Payload) -> LLMReply:
        with self.scope():
            if isinstance(payload, str):
                return to_reply(self.llm.complete(payload, **self.kwargs))
            return to_reply(self.llm.chat(payload, **self.kwargs))

    async def asend(self, payload: Payload) -> LLMReply:
        with self.scope():
            if isinstance(payload, str):
                return to_reply(await self.llm.acomplete(payload, **self.kwargs))
            return to_reply(await self.llm.achat(payload, **self.kwargs))

    def stream(self, payload: Payload) -> Iterator[ChatResponse]:
        with self.scope():
            yield from self.llm.stream_chat(payload, **self.kwargs)  # type: ignore[arg-type]

    async def astream(self, payload: Payload) -> AsyncIterator[ChatResponse]:
        with self.scope():
            async for response in await self.llm.astream_chat(payload, **self.kwargs):  # type: ignore[arg-type]
                yield response

    def chunk_text(self, chunk: Any) -> str:
        return str(getattr(chunk, "delta", "") or "")

    def join(self, acc: Any, chunk: Any) -> Any:
        return chunk

    def reply(self, acc: Any) -> LLMReply:
        return to_reply(acc)


def with_image_block(messages: Sequence[ChatMessage], part: ImagePart) -> list[ChatMessage]:
    """``messages`` with the image added, as an ``ImageBlock``, to the last user message (kept
    as they are when one of them already carries it: the caller's own image message)."""
    out = list(messages)
    if any(im.sha256 == part.sha256 for m in out for im in to_message(m).images):
        return out
    users = [i for i, m in enumerate(out) if m.role == MessageRole.USER]
    block = ImageBlock(image=part.data, image_mimetype=part.mime)
    if not users:
        return [*out, ChatMessage(role=MessageRole.USER, blocks=[block])]
    last = out[users[-1]]
    out[users[-1]] = ChatMessage(role=last.role, blocks=[*last.blocks, block])
    return out


def to_message(message: ChatMessage) -> Message:
    """The core's :class:`Message` of a LlamaIndex one: its text and its inline images."""
    # LlamaIndex keeps an image base64-encoded; resolve_image gives the raw bytes
    blocks = [b for b in message.blocks if isinstance(b, ImageBlock) and b.image is not None]
    images = tuple(image_part(image_input(b.resolve_image().read())) for b in blocks)
    text = "".join(b.text for b in message.blocks if isinstance(b, TextBlock))
    return Message(message.role.value, text, images)


def to_reply(response: object) -> LLMReply:
    """A LlamaIndex chat or completion response (or a string) as an :class:`LLMReply` (its
    ``raw`` the response).

    Raises:
        TypeError: for anything else (the caller records it as a failed call).
    """
    if isinstance(response, str):
        return LLMReply(text=response)
    if not isinstance(response, ChatResponse | CompletionResponse):
        raise TypeError(
            f"the LLM returned {type(response).__name__}, expected a ChatResponse or "
            "CompletionResponse"
        )
    text = response.message.content if isinstance(response, ChatResponse) else response.text
    reply = payload_reply(text or "", response.raw, response.logprobs, response.additional_kwargs)
    return replace(reply, raw=response)


def require_llm(llm: object, name: str = "llm") -> LLM:
    """``llm``, checked to be a LlamaIndex ``LLM`` (nothing is read from ``Settings``)."""
    if not isinstance(llm, LLM):
        raise TypeError(f"{name} must be a LlamaIndex LLM, got {type(llm).__name__}")
    return llm


class ShuntRunner(CoreRunner):
    """The core's :class:`~datashunt.adapters.ShuntRunner` with the LlamaIndex ``llm`` it asks
    (checked by :func:`require_llm`), its shunt's receipts and drift alarms dispatched as
    LlamaIndex instrumentation events."""

    def __init__(self, shunt: Shunt, llm: object) -> None:
        super().__init__(shunt)
        self.llm = require_llm(llm)
        watch_events(shunt)
