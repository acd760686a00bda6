"""Translation between LangChain values and the core's types (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue

from datashunt.errors import InputError
from datashunt.types import LLMReply

__all__ = ["input_text", "message_text", "message_to_reply", "metadata_for"]


def message_text(message: BaseMessage) -> str:
    """The text of a message, whether its content is a string or a list of blocks."""
    return str(message.text)


def input_text(value: Any, input_key: str) -> tuple[str, dict[str, Any]]:
    """The text to classify and any extra template variables, from a runnable's input.

    Accepts a string, a dict holding ``input_key`` (other keys become template variables), a
    prompt value or message list (the last human message is classified), or one message.

    Raises:
        InputError: for anything else, naming what was expected.
    """
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping):
        if input_key not in value:
            raise InputError(
                f"input dict has no {input_key!r} key (keys: {sorted(value)}); pass the text under "
                f"{input_key!r} or set input_key="
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
    raise InputError(
        f"cannot classify a {type(value).__name__}: pass a str, a dict with {input_key!r}, "
        "a prompt value or a list of messages"
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
