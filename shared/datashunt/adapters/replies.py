"""A framework's response as the core's :class:`~datashunt.LLMReply`, and back to the wire shape.

Logprobs are read in the OpenAI shape the core expects, ``[{"token", "logprob",
"top_logprobs": [{"token", "logprob"}]}]``: first from the provider's raw payload (exact: it names
the sampled token; an SDK object is read as the JSON the server sent), else from the per-position
alternatives a framework kept (objects with ``token`` and ``logprob``, e.g. LlamaIndex's
``LogProb``; the sampled token is recovered by matching the answer text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import LLMError
from ..llm.wire import as_wire
from ..types import LLMReply

__all__ = [
    "completion_body",
    "model_name_of",
    "openai_logprobs",
    "payload_reply",
    "unreadable_as_llm_error",
    "wire_mapping",
]

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


def wire_mapping(raw: Any) -> Mapping[str, Any]:
    """A provider payload (a dict or an SDK object) as the JSON the server sent; ``{}`` if none."""
    data = as_wire(raw)
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


def _from_alternatives(positions: Sequence[Sequence[Any]], text: str) -> Logprobs:
    # Only the alternatives per position are known; the sampled one is the alternative that
    # continues the answer text (ties and misses: the most probable alternative).
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
    raw: Any, positions: Sequence[Sequence[Any]] | None, text: str
) -> Logprobs | None:
    """Token logprobs in the OpenAI chat shape, or ``None`` when the response has none.

    Args:
        raw: the provider payload: a dict or an OpenAI SDK object.
        positions: the framework's per-position alternatives (``token``, ``logprob``).
        text: the answer text, used to recover sampled tokens from ``positions``.
    """
    return _from_payload(wire_mapping(raw)) or _from_alternatives(positions or [], text) or None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def payload_reply(
    text: str,
    raw: Any,
    positions: Sequence[Sequence[Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> LLMReply:
    """An :class:`LLMReply` from an answer's text and what the framework kept of the server's
    answer: its raw payload (logprobs, usage, model), per-position alternatives, and ``extra``
    fields (``prompt_tokens`` / ``completion_tokens`` when the payload has no usage)."""
    data, extra = wire_mapping(raw), extra or {}
    usage = data.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    model = data.get("model")
    return LLMReply(
        text=text,
        logprobs=openai_logprobs(raw, positions, text),
        prompt_tokens=_int(usage.get("prompt_tokens")) or _int(extra.get("prompt_tokens")),
        completion_tokens=(
            _int(usage.get("completion_tokens")) or _int(extra.get("completion_tokens"))
        ),
        model=model if isinstance(model, str) else None,
    )


def completion_body(reply: LLMReply, finish_reason: str | None = None) -> dict[str, Any]:
    """A chat-completions body holding ``reply`` whole (a stream's answer so far, say): what
    a framework shows as the raw response, and what :func:`payload_reply` reads back."""
    usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
    return {
        "model": reply.model,
        "choices": [
            {
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": {"content": list(reply.logprobs or [])},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage if reply.prompt_tokens or reply.completion_tokens else None,
    }


def model_name_of(client: Any) -> str | None:
    """The model a framework's client is configured with (``model_name`` or ``model``), if it
    says."""
    for attr in ("model_name", "model"):
        name = getattr(client, attr, None)
        if isinstance(name, str) and name:
            return name
    return None


@contextmanager
def unreadable_as_llm_error() -> Iterator[None]:
    """A reply the provider's client could not read (an OpenAI-compatible server answering 200
    with no ``choices``: ``IndexError`` inside the client) is a failed attempt, retried like a
    body that is not JSON, not a crash on the first try."""
    try:
        yield
    except (IndexError, KeyError) as exc:
        raise LLMError(
            f"the model's reply could not be read ({type(exc).__name__}: {exc}): a reply with "
            "no choices?",
            retryable=True,
        ) from exc
