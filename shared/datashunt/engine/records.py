"""What the store records for one input: the engine's single way of building a record.

:func:`call_record` records a classifier's input (a gate answer or an LLM call);
:func:`exchange_record` a model call with no classifier decision (the generative gate's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..images import describe_input
from ..store import CallRecord, describe_error
from ..types import Decision, LLMReply, LLMRequest, Message, ParsedAnswer, Route, messages_text

__all__ = ["call_record", "describe_error", "exchange_record"]


def call_record(
    text: str,
    decision: Decision,
    *,
    run_id: str | None = None,
    request: LLMRequest | None = None,
    messages: Sequence[Message] = (),
    reply: LLMReply | None = None,
    parsed: ParsedAnswer | None = None,
    error: str | None = None,
    latency_s: float | None = None,
    model: str | None = None,
    attempts: int | None = None,
) -> CallRecord:
    """The record of a gate answer (no ``request``) or of an LLM call.

    Args:
        messages: exactly what the model received; ``prompt`` is their text form.
        model: the configured model, used when the reply names none (failed calls included).
        attempts: LLM calls made, retries included (kept in ``extra``).
    """
    asked = request is not None
    ok = parsed is not None and parsed.ok
    source = ("llm" if ok else "fallback") if asked else "small"
    return CallRecord(
        route=decision.route,
        run_id=run_id,
        source=source,
        model=((reply.model if reply and reply.model else None) or model) if asked else None,
        input_text=describe_input(text),  # an image: its hash and size, never its bytes
        gate_label=decision.label,
        gate_confidence=decision.confidence,
        gate_probs=dict(decision.probabilities),
        candidates=list(decision.candidates),
        prompt=messages_text(messages) if asked else None,
        messages=[m.to_json() for m in messages] if asked else None,
        response=reply.text if reply else None,
        parsed_label=parsed.label if parsed else None,
        parse_ok=parsed.ok if parsed else None,
        parse_reason=parsed.reason if parsed else None,
        llm_confidence=parsed.confidence if parsed else None,
        llm_probs=dict(parsed.probabilities) if parsed and parsed.probabilities else None,
        prompt_tokens=reply.prompt_tokens if reply else None,
        completion_tokens=reply.completion_tokens if reply else None,
        latency_s=latency_s,
        error=error,
        extra=_extra(request, attempts),
    )


def _extra(request: LLMRequest | None, attempts: int | None) -> dict[str, object] | None:
    if request is None:
        return None
    out: dict[str, object] = {} if attempts is None else {"attempts": attempts}
    if request.audit:  # an audit of a gate answer: the gate's answer was the one returned
        out["audit"] = True
    return out or None


def exchange_record(
    messages: Sequence[Message],
    reply: LLMReply | None,
    *,
    route: Route,
    source: str,
    error: str | None = None,
    latency_s: float | None = None,
    model: str | None = None,
    attempts: int | None = None,
    input_text: str | None = None,
    gate_confidence: float | None = None,
    extra: Mapping[str, object] | None = None,
) -> CallRecord:
    """The record of one model call that no classifier decided (the generative gate's).

    Args:
        messages: exactly what the model received; ``prompt`` is their text form.
        reply: the answer that was returned, if any.
        model: the configured model, used when the reply names none (failed calls included).
        attempts: calls made, retries included (kept in ``extra``).
        extra: further facts of the route (kept in ``extra``).
    """
    more = dict(extra or {})
    if attempts is not None:
        more["attempts"] = attempts
    return CallRecord(
        route=route,
        source=source,
        model=(reply.model if reply and reply.model else None) or model,
        input_text=input_text,
        gate_confidence=gate_confidence,
        prompt=messages_text(messages),
        messages=[m.to_json() for m in messages],
        response=reply.text if reply else None,
        prompt_tokens=reply.prompt_tokens if reply else None,
        completion_tokens=reply.completion_tokens if reply else None,
        latency_s=latency_s,
        error=error,
        extra=more or None,
    )
