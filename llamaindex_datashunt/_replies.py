"""LlamaIndex responses to the core's :class:`~datashunt.LLMReply` (text, logprobs, tokens, model).

Logprobs are read in the OpenAI shape the core expects, ``[{"token", "logprob",
"top_logprobs": [{"token", "logprob"}]}]``: first from the provider's raw payload (exact: it names
the sampled token; an OpenAI SDK object is read as the JSON the server sent), else from
LlamaIndex's ``response.logprobs`` (per position, the top alternatives only; the sampled token
is recovered by matching the answer text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse, LogProb

from datashunt import LLMReply
from datashunt.llm.wire import as_wire

__all__ = ["openai_logprobs", "to_reply"]

Logprobs = list[Mapping[str, Any]]


def _pair(token: Any, logprob: Any) -> dict[str, Any] | None:
    """``{"token", "logprob"}``, or ``None`` without a token and a finite logprob."""
    try:
        lp = float(logprob)
    except (TypeError, ValueError):
        return None
    return (
        {"token": token, "logprob": lp} if isinstance(token, str) and not math.isnan(lp) else None
    )


def _position(head: dict[str, Any] | None, alternatives: Iterable[tuple[Any, Any]]) -> Logprobs:
    """One generated position with its alternatives (none when the head is unusable)."""
    if head is None:
        return []
    return [{**head, "top_logprobs": [a for a in (_pair(t, v) for t, v in alternatives) if a]}]


def _payload(raw: Any) -> Mapping[str, Any]:
    data = as_wire(raw)  # an SDK object as the JSON the server sent
    return data if isinstance(data, Mapping) else {}


def _from_payload(data: Mapping[str, Any]) -> Logprobs:
    """The first choice's logprobs: the chat shape (``logprobs.content``), or the completions
    API's parallel lists (``tokens``, ``token_logprobs``, one ``{token: logprob}`` each)."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    logprobs = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(logprobs, Mapping):
        return []
    out: Logprobs = []
    for e in [e for e in logprobs.get("content") or [] if isinstance(e, Mapping)]:
        tops = [(t.get("token"), t.get("logprob")) for t in e.get("top_logprobs") or []]
        out += _position(_pair(e.get("token"), e.get("logprob")), tops)
    if out:
        return out
    tokens, lps = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    for token, lp, top in zip(tokens, lps, tops, strict=False):
        out += _position(_pair(token, lp), (top or {}).items())
    return out


def _from_llamaindex(positions: Sequence[Sequence[LogProb]], text: str) -> Logprobs:
    # LlamaIndex keeps only the alternatives per position; the sampled one is the alternative
    # that continues the answer text (ties and misses: the most probable alternative).
    out: Logprobs = []
    cursor = 0
    for position in positions:
        alts = [a for a in (_pair(p.token, p.logprob) for p in position) if a]
        if not alts:
            continue
        matching = [a for a in alts if a["token"] and text.startswith(a["token"], cursor)]
        chosen = max(matching or alts, key=lambda a: a["logprob"])
        cursor += len(chosen["token"]) if matching else 0
        out.append({**chosen, "top_logprobs": alts})
    return out


def openai_logprobs(
    raw: Any, positions: Sequence[Sequence[LogProb]] | None, text: str
) -> Logprobs | None:
    """Token logprobs in the OpenAI chat shape, or ``None`` when the response has none.

    Args:
        raw: the provider payload (``response.raw``): a dict or an OpenAI SDK object.
        positions: LlamaIndex's ``response.logprobs``.
        text: the answer text, used to recover sampled tokens from ``positions``.
    """
    return _from_payload(_payload(raw)) or _from_llamaindex(positions or [], text) or None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def to_reply(response: object) -> LLMReply:
    """Convert a LlamaIndex chat or completion response to an :class:`LLMReply`.

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
    text = text or ""
    data, extra = _payload(response.raw), response.additional_kwargs or {}
    usage = data.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    model = data.get("model")
    return LLMReply(
        text=text,
        logprobs=openai_logprobs(response.raw, response.logprobs, text),
        prompt_tokens=_int(usage.get("prompt_tokens")) or _int(extra.get("prompt_tokens")),
        completion_tokens=(
            _int(usage.get("completion_tokens")) or _int(extra.get("completion_tokens"))
        ),
        model=model if isinstance(model, str) else None,
    )
