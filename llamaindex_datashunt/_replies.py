"""LlamaIndex responses to the core's :class:`~datashunt.LLMReply` (text, logprobs, tokens, model).

Logprobs are read in the OpenAI shape the core expects, ``[{"token", "logprob",
"top_logprobs": [{"token", "logprob"}]}]``: first from the provider's raw payload (exact: it names
the sampled token), else from LlamaIndex's ``response.logprobs`` (per position, the top
alternatives only; the sampled token is recovered by matching the answer text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse, LogProb

from datashunt import LLMReply

__all__ = ["openai_logprobs", "response_text", "to_reply"]

Logprobs = list[Mapping[str, Any]]


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for objects (OpenAI SDK models), else None."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _first_choice(raw: Any) -> Any:
    choices = _get(raw, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str) and choices:
        return choices[0]
    return None


def _float(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if not math.isnan(f) else None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _alt(token: Any, logprob: Any) -> dict[str, Any] | None:
    lp = _float(logprob)
    if not isinstance(token, str) or lp is None:
        return None
    return {"token": token, "logprob": lp}


def _from_openai_content(content: Sequence[Any]) -> Logprobs:
    out: Logprobs = []
    for entry in content:
        head = _alt(_get(entry, "token"), _get(entry, "logprob"))
        if head is None:
            continue
        alts = [a for a in (_alt(_get(t, "token"), _get(t, "logprob")) for t in _seq(entry)) if a]
        out.append({**head, "top_logprobs": alts})
    return out


def _seq(entry: Any) -> Sequence[Any]:
    tops = _get(entry, "top_logprobs")
    return tops if isinstance(tops, Sequence) and not isinstance(tops, str) else ()


def _from_legacy_completion(logprobs: Any) -> Logprobs:
    # The completions API: parallel lists, top_logprobs as one {token: logprob} dict per position.
    tokens, lps = _get(logprobs, "tokens"), _get(logprobs, "token_logprobs")
    if not isinstance(tokens, Sequence) or not isinstance(lps, Sequence):
        return []
    tops = _get(logprobs, "top_logprobs") or [None] * len(tokens)
    out: Logprobs = []
    for tok, lp, top in zip(tokens, lps, tops, strict=False):
        head = _alt(tok, lp)
        if head is None:
            continue
        alts = [a for a in (_alt(t, v) for t, v in (top or {}).items()) if a]
        out.append({**head, "top_logprobs": alts})
    return out


def _from_llamaindex(positions: Sequence[Sequence[LogProb]], text: str) -> Logprobs:
    # LlamaIndex keeps only the alternatives per position; the sampled one is the alternative
    # that continues the answer text (ties and misses: the most probable alternative).
    out: Logprobs = []
    cursor = 0
    for position in positions:
        alts = [a for a in (_alt(p.token, p.logprob) for p in position) if a]
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
    choice = _first_choice(raw)
    logprobs = _get(choice, "logprobs")
    content = _get(logprobs, "content")
    if isinstance(content, Sequence) and not isinstance(content, str) and content:
        out = _from_openai_content(content)
        if out:
            return out
    if logprobs is not None:
        out = _from_legacy_completion(logprobs)
        if out:
            return out
    if positions:
        out = _from_llamaindex(positions, text)
        if out:
            return out
    return None


def response_text(response: ChatResponse | CompletionResponse) -> str:
    """The answer text of a chat or completion response ("" when it has none)."""
    if isinstance(response, ChatResponse):
        return response.message.content or ""
    return response.text or ""


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
    text = response_text(response)
    raw = response.raw
    usage = _get(raw, "usage")
    extra = response.additional_kwargs or {}
    prompt_tokens = _int(_get(usage, "prompt_tokens")) or _int(extra.get("prompt_tokens"))
    completion_tokens = _int(_get(usage, "completion_tokens")) or _int(
        extra.get("completion_tokens")
    )
    model = _get(raw, "model")
    return LLMReply(
        text=text,
        logprobs=openai_logprobs(raw, response.logprobs, text),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=model if isinstance(model, str) else None,
    )
