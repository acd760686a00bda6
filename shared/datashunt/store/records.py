"""What the store holds: one :class:`CallRecord` per call, and how much of its inputs to keep."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "MAX_RESPONSE_CHARS",
    "RECORD_FIELDS",
    "CallRecord",
    "StoreInputs",
    "capped",
    "utc_now",
]

#: Keep inputs in ``"full"``, as a SHA-256 ``"hash"`` only, or ``"none"``.
StoreInputs = Literal["full", "hash", "none"]


def utc_now() -> datetime:
    """The current time, zone-aware (UTC)."""
    return datetime.now(timezone.utc)  # noqa: UP017 - keeps Python 3.10 working


@dataclass
class CallRecord:
    """One row of the store. Only ``route`` is required; the rest is filled when known.

    ``messages`` are the exact messages the model received, each ``{"role", "content"}`` (and
    ``images``: each image's type, hash and size, never its bytes);
    ``prompt`` is their text form (the user's text when the model received one user message
    alone, else one ``role: content`` line per message).

    Example:
        >>> rec = CallRecord(route="llm", input_text="great!", response="positive")
        >>> rec.to_json()["route"]
        'llm'
    """

    route: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=utc_now)
    run_id: str | None = None
    source: str | None = None
    model: str | None = None
    input_text: str | None = None
    input_hash: str | None = None
    gate_label: str | None = None
    gate_confidence: float | None = None
    gate_probs: dict[str, float] | None = None
    candidates: list[str] | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    response: str | None = None
    parsed_label: str | None = None
    parse_ok: bool | None = None
    parse_reason: str | None = None
    llm_confidence: float | None = None
    llm_probs: dict[str, float] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (time as ISO 8601)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


#: The record's field names, in column order.
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))


#: The longest answer a record keeps, in characters: a runaway model's megabytes are cut to
#: this, and the record's ``extra`` says so (``response_truncated``, ``response_chars``).
MAX_RESPONSE_CHARS = 65_536


def capped(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``response`` cut to :data:`MAX_RESPONSE_CHARS`, marked if it was."""
    text = row.get("response")
    if isinstance(text, str) and len(text) > MAX_RESPONSE_CHARS:
        row["response"] = text[:MAX_RESPONSE_CHARS]
        mark = {"response_truncated": True, "response_chars": len(text)}
        row["extra"] = {**(row.get("extra") or {}), **mark}
    return row
