"""The output of :class:`DataShuntRunnable`: the final label, the route and the raw message."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import BaseMessage, BaseMessageChunk
from pydantic import BaseModel, Field

from datashunt.adapters import decision_event, result_event
from datashunt.types import Decision, ShuntResult

__all__ = ["ShuntOutput"]


class ShuntOutput(BaseModel):
    """What the shunt answered for one input.

    Streaming yields partial outputs (the model's message chunks); adding them up (``+``) gives
    the same value ``invoke`` returns.

    Attributes:
        label: the final label (``None`` only in a partial streamed chunk).
        route: ``"small"`` (the gate answered alone) or ``"llm"``.
        source: ``"small"``, ``"llm"``, or ``"fallback"`` (the model failed or answered
            something unparseable; the gate's label was used).
        confidence: the gate's confidence ``C_s``.
        probabilities: the gate's probabilities per label.
        candidates: the labels offered to the model.
        reason: why the route was taken.
        llm_confidence: ``C_l`` from the model's logprobs, when available.
        error: the model error, if the call failed.
        message: the model's raw message (``None`` on the small route).
        record_id: the store record, if a store is attached.
        attempts: model calls made for this input, retries included (``0`` on the small route).
        receipt: the decision's receipt: the policy's version, δ, the guarantee, the
            probability that the gate is wrong, the call's tokens and cost.
        audit: the LLM's answer when this gate answer was audited (``audit_rate``).
    """

    label: str | None = None
    route: Literal["small", "llm"] | None = None
    source: Literal["small", "llm", "fallback"] | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    candidates: list[str] = Field(default_factory=list)
    reason: str | None = None
    llm_confidence: float | None = None
    error: str | None = None
    message: BaseMessage | None = None
    record_id: str | None = None
    attempts: int | None = None
    receipt: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None

    @classmethod
    def from_decision(cls, decision: Decision, **kwargs: Any) -> ShuntOutput:
        """A partial output carrying only the gate's decision."""
        return cls(**{**decision_event(decision), "label": None, **kwargs})

    @classmethod
    def from_result(cls, result: ShuntResult, message: BaseMessage | None = None) -> ShuntOutput:
        """The full output for a core result."""
        return cls(**result_event(result), message=message)

    def __add__(self, other: ShuntOutput) -> ShuntOutput:
        """Merge a later streamed chunk into this one (message chunks concatenate)."""
        if not isinstance(other, ShuntOutput):
            return NotImplemented
        message: BaseMessage | None = self.message
        if isinstance(message, BaseMessageChunk) and isinstance(other.message, BaseMessageChunk):
            message = message + other.message
        elif other.message is not None:
            message = other.message
        mine = dict(self)  # the fields: each set by the later chunk wins
        merged = {k: v if v not in (None, {}, []) else mine[k] for k, v in dict(other).items()}
        return type(self)(**{**merged, "message": message})
