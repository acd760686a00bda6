"""Typed values that flow through a shunt: decisions, LLM requests and replies, results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Decision",
    "LLMReply",
    "LLMRequest",
    "ParsedAnswer",
    "Route",
    "ShuntResult",
]

Route = Literal["small", "llm"]


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one input.

    Attributes:
        route: ``"small"`` when the gate answers alone, ``"llm"`` when the large model is asked.
        label: the gate's top label.
        confidence: ``C_s``, the gate's (temperature-scaled) maximum softmax probability.
        probabilities: the full probability vector, label -> probability, in label order.
        candidates: the labels offered to the large model (all labels, or the hard-pruned set).
        reason: a short human-readable explanation of the route.
    """

    route: Route
    label: str
    confidence: float
    probabilities: Mapping[str, float]
    candidates: tuple[str, ...]
    reason: str

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable labels with their probabilities, most probable first."""
        ranked = sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)
        return ranked[:k]


@dataclass(frozen=True)
class LLMRequest:
    """Everything needed to ask the large model about one input.

    Attributes:
        text: the original input.
        decision: the gate's decision for it (route is ``"llm"``).
        variables: named template variables (``text``, ``labels``, ``candidates``, ``hint``, ...)
            that any prompt template can use.
        prompt: the shunt's default prompt rendered from ``variables``; adapters with their own
            prompt template ignore it.
        aliases: extra surface forms per label that the answer may use for this request only
            (e.g. an option number ``"2"`` or a tool name), honoured when parsing the answer.
    """

    text: str
    decision: Decision
    variables: Mapping[str, str]
    prompt: str
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LLMReply:
    """What the large model answered.

    Attributes:
        text: the answer text.
        logprobs: OpenAI-style token logprobs, a list of ``{"token", "logprob", "top_logprobs"}``
            dicts, when the provider returned them.
        prompt_tokens: tokens in the prompt, when the provider reported them.
        completion_tokens: tokens in the answer, when the provider reported them.
        model: the model name the provider reported.
    """

    text: str
    logprobs: list[Mapping[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class ParsedAnswer:
    """The large model's free-text answer mapped to a label.

    Attributes:
        label: the label, or ``None`` when the answer could not be parsed.
        ok: whether a label was found among the allowed ones.
        reason: how it was found, or why not.
        confidence: ``C_l``, the model's probability of ``label`` from token logprobs, if any.
        probabilities: the model's distribution over the allowed labels from logprobs, if any.
    """

    label: str | None
    ok: bool
    reason: str
    confidence: float | None = None
    probabilities: Mapping[str, float] | None = None


@dataclass(frozen=True)
class ShuntResult:
    """The final answer for one input.

    Attributes:
        label: the final label (always one of the configured labels).
        route: the route taken (the decision's route).
        source: who produced ``label``: ``"small"``, ``"llm"``, or ``"fallback"`` (the LLM was
            asked but failed or answered something unparseable, so the gate's label was used).
        decision: the gate's decision.
        reply: the large model's reply, if it was asked and answered.
        parsed: the parsed answer, if the model answered.
        error: the error message, if the model call failed.
        latency_s: wall time of the model call, in seconds.
        record_id: the id of the store record, if a store is attached.
        extra: notes on how the result was made (``store_error`` when the record could not be
            written).
        attempts: LLM calls made for this input, retries included (0 on the small route).
    """

    label: str
    route: Route
    source: Literal["small", "llm", "fallback"]
    decision: Decision
    reply: LLMReply | None = None
    parsed: ParsedAnswer | None = None
    error: str | None = None
    latency_s: float | None = None
    record_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0

    @property
    def llm_confidence(self) -> float | None:
        """``C_l`` for the model's answer, when logprobs were available."""
        return self.parsed.confidence if self.parsed else None
