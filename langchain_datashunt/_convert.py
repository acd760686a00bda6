"""Translation between LangChain values and the core's types (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue

from datashunt import InputError, LLMReply, Message

__all__ = [
    "as_messages",
    "input_text",
    "message_text",
    "message_to_reply",
    "metadata_for",
    "model_name_of",
]

# LangChain message types -> OpenAI wire roles (what the provider receives)
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def message_text(message: BaseMessage) -> str:
    """The text of a message, whether its content is a string or a list of blocks."""
    return str(message.text)


def as_messages(value: Any) -> tuple[Message, ...]:
    """The messages a chat model receives for ``value`` (a prompt value, messages, a string)."""
    if isinstance(value, PromptValue):
        value = value.to_messages()
    elif isinstance(value, str):
        return (Message("user", value),)
    if isinstance(value, BaseMessage):
        value = [value]
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        return tuple(Message(_ROLES.get(m.type, m.type), message_text(m)) for m in value)
    return (Message("user", str(value)),)


def model_name_of(llm: Any) -> str | None:
    """The model a chat model is configured with (``model_name`` or ``model``), if it says."""
    for attr in ("model_name", "model"):
        name = getattr(llm, attr, None)
        if isinstance(name, str) and name:
            return name
    return None


def input_text(value: Any, input_key: str, index: int | None = None) -> tuple[str, dict[str, Any]]:
    """The text to classify and any extra template variables, from a runnable's input.

    Accepts a string, a dict holding ``input_key`` (other keys become template variables), a
    prompt value or message list (the last human message is classified), or one message.

    Raises:
        InputError: for anything else, naming the input (by ``index`` in a batch) and what was
            expected.
    """
    where = "input" if index is None else f"input {index}"
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping):
        if input_key not in value:
            raise InputError(
                f"{where} is a dict with no {input_key!r} key (keys: {sorted(value)}); pass the "
                f"text under {input_key!r} or set input_key="
            )
        extras = {k: v for k, v in value.items() if k != input_key}
        return value[input_key], extras
    messages: Sequence[Any] | None = None
    if isinstance(value, PromptValue):
        messages = value.to_messages()
    elif isinstance(value, BaseMessage):
        messages = [value]
    elif isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
        messages = value
    if messages:
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        return message_text((humans or list(messages))[-1]), {}
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise InputError(
        f"{where} is {article} {kind}, which cannot be classified: pass a str, a dict with "
        f"{input_key!r}, a prompt value or a list of messages"
    )


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


def metadata_for(decision: Any, *, recorded: bool) -> dict[str, Any]:
    """Run metadata that shows the gate's decision in callbacks and traces."""
    return {
        "datashunt_route": decision.route,
        "datashunt_label": decision.label,
        "datashunt_confidence": round(float(decision.confidence), 6),
        "datashunt_candidates": list(decision.candidates),
        "datashunt_recorded": recorded,
    }
