"""A batch of runnable inputs after validation and the gate pass (pure; shared by every path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datashunt import DataShuntError, Decision, LLMRequest, Shunt
from datashunt.inputs import validate_text

from ._convert import input_text

__all__ = ["Item", "Plan", "check_inputs", "event_data", "plan_batch"]


@dataclass
class Item:
    """One decided input: its text, extra template variables, decision and LLM request."""

    index: int
    text: str
    extras: dict[str, Any]
    decision: Decision
    request: LLMRequest | None


@dataclass
class Plan:
    """Each input's item, or its input error, in input order."""

    slots: list[Item | Exception]

    @property
    def decided(self) -> list[Item]:
        """The inputs the gate decided, in input order."""
        return [s for s in self.slots if isinstance(s, Item)]

    @property
    def small(self) -> list[Item]:
        """The inputs the gate answers alone."""
        return [it for it in self.decided if it.request is None]

    @property
    def asks(self) -> list[Item]:
        """The inputs the LLM is asked about."""
        return [it for it in self.decided if it.request is not None]

    def errors(self) -> list[Any]:
        """An output list holding the input errors in place (``None`` for the rest)."""
        return [s if isinstance(s, Exception) else None for s in self.slots]


def _read(
    shunt: Shunt, inputs: Sequence[Any], i: int, input_key: str
) -> tuple[str, dict[str, Any]]:
    """Input ``i``'s text and extra variables, checked (named by index in a batch of several)."""
    index = i if len(inputs) > 1 else None
    text, extras = input_text(inputs[i], input_key, index, images=shunt.takes_images)
    validate_text(text, index=index, max_chars=shunt.max_chars)
    return text, extras


def check_inputs(shunt: Shunt, inputs: Sequence[Any], input_key: str) -> None:
    """Raise the first input error of a batch, before anything is decided or paid for."""
    for i in range(len(inputs)):
        _read(shunt, inputs, i, input_key)


def plan_batch(shunt: Shunt, inputs: Sequence[Any], input_key: str, *, strict: bool) -> Plan:
    """Validate every input, then ONE gate pass over the valid ones.

    Args:
        strict: raise the first input error before anything is decided or paid for
            (``return_exceptions=False``).

    Raises:
        DataShuntError: under ``strict``, for the first invalid input (named by its index in
            a batch of more than one).
    """
    slots: list[Item | Exception | None] = [None] * len(inputs)
    valid: list[tuple[int, str, dict[str, Any]]] = []
    for i in range(len(inputs)):
        try:
            text, extras = _read(shunt, inputs, i, input_key)
            valid.append((i, text, extras))
        except DataShuntError as exc:
            if strict:
                raise
            slots[i] = exc
    if valid:
        texts = [t for _, t, _ in valid]
        decisions = shunt.decide(texts)
        requests = iter(shunt.prepare(texts, decisions))
        for (i, text, extras), d in zip(valid, decisions, strict=True):
            slots[i] = Item(i, text, extras, d, next(requests) if d.route == "llm" else None)
    return Plan([s for s in slots if s is not None])


def event_data(decision: Decision) -> dict[str, Any]:
    """The payload of the ``datashunt_decision`` custom event."""
    return {
        "route": decision.route,
        "label": decision.label,
        "confidence": decision.confidence,
        "probabilities": dict(decision.probabilities),
        "candidates": list(decision.candidates),
        "reason": decision.reason,
    }
