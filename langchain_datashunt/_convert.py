"""Translation between LangChain values and the core's types (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue

from datashunt import LLMReply
from datashunt.adapters import Message, block_image_url, keyed_input, unclassifiable
from datashunt.images import ImagePart, as_input, image_part, is_image_input

__all__ = ["as_messages", "input_text", "message_text", "message_to_reply", "with_image"]

# LangChain message types -> OpenAI wire roles (what the provider receives)
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def message_text(message: BaseMessage) -> str:
    """The text of a message, whether its content is a string or a list of blocks."""
    return str(message.text)


def _listed(value: Any) -> Any:
    """A prompt value or one message as a list of messages; anything else as it is."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    return [value] if isinstance(value, BaseMessage) else value


def as_messages(value: Any) -> tuple[Message, ...]:
    """The messages a chat model receives for ``value`` (a prompt value, messages, a string)."""
    value = _listed(value)
    if isinstance(value, str):
        return (Message("user", value),)
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        return tuple(
            Message(_ROLES.get(m.type, m.type), message_text(m), _image_parts(m)) for m in value
        )
    return (Message("user", str(value)),)


def _image_parts(message: BaseMessage) -> tuple[ImagePart, ...]:
    """The inline images of a message's content blocks (a URL to fetch is not an image here)."""
    if isinstance(message.content, str):
        return ()
    urls = [block_image_url(b) for b in message.content if isinstance(b, Mapping)]
    return tuple(image_part(u) for u in urls if u is not None)


def with_image(value: Any, text: str) -> Any:
    """The prompt ``value`` with the input image attached to its last human message as a
    standard image content block (unchanged when the input is text)."""
    if not is_image_input(text):
        return value
    part = image_part(text)
    block = {"type": "image", "base64": part.base64, "mime_type": part.mime}
    value = _listed(value)
    messages = [HumanMessage(value)] if isinstance(value, str) else list(value)
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if not humans:
        return [*messages, HumanMessage(content=[block])]
    last = messages[humans[-1]]
    content = (
        [{"type": "text", "text": last.content}]
        if isinstance(last.content, str)
        else list(last.content)
    )
    messages[humans[-1]] = HumanMessage(content=[*content, block])
    return messages


def input_text(
    value: Any, input_key: str, index: int | None = None, *, images: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The text to classify and any extra template variables, from a runnable's input.

    Accepts a string, a dict holding ``input_key`` (other keys become template variables), a
    prompt value or message list (the last human message is classified), or one message. With
    ``images`` (an image gate), bytes, PIL images and paths become data URLs, and a message's
    image block is what is classified.

    Raises:
        InputError: for anything else, naming the input (by ``index`` in a batch) and what was
            expected.
    """
    if isinstance(value, Mapping):
        return keyed_input(value, input_key, index, images=images)
    value = _listed(value)
    if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
        humans = [m for m in value if isinstance(m, HumanMessage)]
        last = (humans or value)[-1]
        parts = _image_parts(last) if images else ()  # an image gate classifies the image
        return (parts[0].data_url if parts else message_text(last)), {}
    value = as_input(value, index=index) if images else value
    if isinstance(value, str):
        return value, {}
    expected = f"a str, a dict with {input_key!r}, a prompt value or a list of messages"
    raise unclassifiable(value, index, expected)


def _logprobs(message: BaseMessage) -> list[Mapping[str, Any]] | None:
    lp = message.response_metadata.get("logprobs")
    if isinstance(lp, Mapping):  # OpenAI: {"content": [...], "refusal": ...}
        lp = lp.get("content")
    return list(lp) if isinstance(lp, list) and lp else None


def message_to_reply(message: BaseMessage) -> LLMReply:
    """An :class:`LLMReply` from a chat model's message (text, logprobs, tokens, model name)."""
    usage = getattr(message, "usage_metadata", None) or {}
    meta = message.response_metadata
    model = meta.get("model_name") or meta.get("model")
    return LLMReply(
        text=message_text(message),
        logprobs=_logprobs(message),
        prompt_tokens=usage.get("input_tokens"),
        completion_tokens=usage.get("output_tokens"),
        model=str(model) if model else None,
        raw=message,
    )
