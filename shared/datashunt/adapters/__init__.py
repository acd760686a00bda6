"""What an adapter author writes against: the engine's hook and the values it passes.

A user builds a :class:`~datashunt.Shunt` and hands it to an adapter (``langchain_datashunt``,
``llamaindex_datashunt``, or one of your own). The adapter turns its framework's input into text
(and template variables), asks :meth:`Shunt.plan <datashunt.Shunt.plan>` for the decisions,
emits its own events, and runs the plan with :meth:`Shunt.run_plan <datashunt.Shunt.run_plan>`
and a :class:`ModelCall` that says how its model is called. Nothing else is restated: the
helpers below are what every adapter needs in its framework's terms (options refused with a
hint, a generative shunt built from keywords, the payloads of its events).

Example:
    >>> from datashunt.adapters import ModelCall, Rendered
    >>> class EchoCall(ModelCall):
    ...     def render(self, request):
    ...         return Rendered(request.prompt, ())
    ...     def send(self, payload):
    ...         return "positive"
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from ..engine import CallFor, DriftAlarm, FunctionCall, Item, ModelCall, Plan, Rendered
from ..engine.exchange import Exchange, aexchange, exchange
from ..errors import ConfigError
from ..generative import GenerativeResult, GenerativeShunt
from ..parsing import AnswerParser
from ..prompts import hard_candidates, prompt_variables, render_prompt, soft_hint
from ..types import Decision, LLMReply, LLMRequest, Message, ParsedAnswer
from .choices import LabelChoices, selection_reason
from .replies import completion_body, openai_logprobs, payload_reply, wire_mapping
from .runner import ShuntRunner, result_summary

__all__ = [
    "GENERATIVE_OPTIONS",
    "AnswerParser",
    "CallFor",
    "Exchange",
    "FunctionCall",
    "Item",
    "LLMReply",
    "LLMRequest",
    "LabelChoices",
    "Message",
    "ModelCall",
    "ParsedAnswer",
    "Plan",
    "Rendered",
    "ShuntRunner",
    "aexchange",
    "completion_body",
    "decision_event",
    "drift_event",
    "exchange",
    "generative_shunt",
    "generative_summary",
    "hard_candidates",
    "openai_logprobs",
    "payload_reply",
    "prompt_variables",
    "refuse_loose",
    "render_prompt",
    "result_summary",
    "selection_reason",
    "soft_hint",
    "wire_mapping",
]

#: The keywords :func:`generative_shunt` builds a :class:`GenerativeShunt` from.
GENERATIVE_OPTIONS = frozenset({"policy", "store", "record_small", "retry", "on_llm_error"})


def refuse_loose(owner: str, kwargs: Mapping[str, Any], names: Set[str], how: str) -> None:
    """Refuse the shunt's options passed loose to an adapter that takes a built shunt.

    Raises:
        ConfigError: naming the loose keywords and ``how`` to pass them instead.
    """
    loose = sorted(set(kwargs) & names)
    if loose:
        raise ConfigError(f"{owner} takes a built shunt: {how}, for the options {loose}")


def generative_shunt(kwargs: Mapping[str, Any]) -> tuple[GenerativeShunt, dict[str, Any]]:
    """A :class:`GenerativeShunt` from the :data:`GENERATIVE_OPTIONS` among ``kwargs``, and
    the other keywords (the adapter's own)."""
    options = {k: v for k, v in kwargs.items() if k in GENERATIVE_OPTIONS}
    rest = {k: v for k, v in kwargs.items() if k not in GENERATIVE_OPTIONS}
    return GenerativeShunt(**options), rest


def generative_summary(result: GenerativeResult) -> dict[str, Any]:
    """A generative answer's route as JSON-ready metadata (what an adapter attaches to the
    message it returns)."""
    return {
        "route": result.route,
        "source": result.source,
        "score": result.judgement.score,
        "reason": result.judgement.reason,
        "small_answer": result.small.text if result.small is not None else None,
        "error": result.error,
        "small_error": result.small_error,
        "record_id": result.record_id,
    }


def decision_event(decision: Decision) -> dict[str, Any]:
    """A gate decision as an event payload."""
    return {
        "route": decision.route,
        "label": decision.label,
        "confidence": decision.confidence,
        "probabilities": dict(decision.probabilities),
        "candidates": list(decision.candidates),
        "reason": decision.reason,
    }


def drift_event(alarm: DriftAlarm, serving: str | None, shadowing: bool) -> dict[str, Any]:
    """A drift alarm as an event payload, with what the shunt serves after it (``shadowing``:
    the alarm sent every input back to the LLM, see ``on_drift``)."""
    return {
        "at": alarm.at,
        "test": alarm.test,
        "statistic": alarm.statistic,
        "pvalue": alarm.pvalue,
        "detail": alarm.describe(),
        "serving": serving,
        "shadowing": shadowing,
    }
