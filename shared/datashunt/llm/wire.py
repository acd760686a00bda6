"""The chat-completions wire format as typed values: an answer body, a streamed chunk.

Pure functions over the JSON the server sent (a dict), shared by the sync, async and streamed
calls of :class:`~datashunt.llm.client.OpenAICompatLLM` and by anyone holding such a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LLMError
from ..types import LLMReply

__all__ = [
    "ReplyAccumulator",
    "as_wire",
    "http_error_message",
    "parse_chunk",
    "parse_completion",
]

_HINTS = {
    401: "check api_key",
    403: "check api_key and the model's access rights",
    404: "check base_url (it usually ends in /v1) and the model name",
    413: "the prompt is too long for this server",
    429: "rate limited: slow down or raise the quota",
}


def http_error_message(status: int, detail: str, url: str) -> str:
    """``HTTP 503: <the server's words> (POST <url>); <what to do>``."""
    hint = _HINTS.get(status, "a server-side failure, worth another try" if status >= 500 else "")
    return f"HTTP {status}: {detail[:300]} (POST {url})" + (f"; {hint}" if hint else "")


def as_wire(obj: Any) -> Any:
    """An SDK (pydantic) object as the JSON the server sent: fields it did not send are left
    out; anything else as it is."""
    dump = getattr(obj, "model_dump", None)
    return dump(exclude_unset=True, warnings=False) if callable(dump) else obj


def parse_completion(data: Any, source: str = "the server") -> LLMReply:
    """An :class:`LLMReply` from a chat-completions response body (a dict).

    Args:
        data: the body.
        source: who sent it, for the error message (the URL).

    Raises:
        LLMError: (retryable) if the body is not JSON or not a chat-completions response: a
            gateway's error page, a truncated answer.
    """
    if isinstance(data, str | bytes):
        raise LLMError(f"{source} answered with invalid JSON: {data[:200]!r}", retryable=True)
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(
            f"not a chat-completions response from {source}: {str(data)[:200]}", retryable=True
        ) from exc
    lp = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
    usage = data.get("usage") or {}
    return LLMReply(
        text=text,
        logprobs=lp or None,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        model=data.get("model"),
    )


def parse_chunk(data: Mapping[str, Any]) -> LLMReply:
    """One streamed chunk as a delta: its new text, its tokens' logprobs, usage and model."""
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    usage = data.get("usage") or {}
    return LLMReply(
        text=(choice.get("delta") or {}).get("content") or "",
        logprobs=(choice.get("logprobs") or {}).get("content") or None,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        model=data.get("model"),
    )


class ReplyAccumulator:
    """Joins streamed deltas into the whole answer so far (text, logprobs, last usage, model).

    Example:
        >>> acc = ReplyAccumulator()
        >>> acc.add(LLMReply("posi")).text, acc.add(LLMReply("tive")).text
        ('posi', 'positive')
    """

    def __init__(self) -> None:
        self.reply = LLMReply(text="")

    def add(self, delta: LLMReply) -> LLMReply:
        """Add one delta; returns the answer so far (its ``raw`` is the last chunk)."""
        so_far = self.reply
        logprobs = [*(so_far.logprobs or []), *(delta.logprobs or [])]
        self.reply = LLMReply(
            text=so_far.text + delta.text,
            logprobs=logprobs or None,
            prompt_tokens=delta.prompt_tokens or so_far.prompt_tokens,
            completion_tokens=delta.completion_tokens or so_far.completion_tokens,
            model=delta.model or so_far.model,
            raw=delta.raw,
        )
        return self.reply
