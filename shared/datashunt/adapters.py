"""What an adapter author writes against: the engine's hook and the values it passes.

A user builds a :class:`~datashunt.Shunt` and hands it to an adapter (``langchain_datashunt``,
``llamaindex_datashunt``, or one of your own). The adapter turns its framework's input into text
(and template variables), asks :meth:`Shunt.plan <datashunt.Shunt.plan>` for the decisions,
emits its own events, and runs the plan with :meth:`Shunt.run_plan <datashunt.Shunt.run_plan>`
and a :class:`ModelCall` that says how its model is called. Nothing else is restated.

Example:
    >>> from datashunt.adapters import ModelCall, Rendered
    >>> class EchoCall(ModelCall):
    ...     def render(self, request):
    ...         return Rendered(request.prompt, ())
    ...     def send(self, payload):
    ...         return "positive"
"""

from __future__ import annotations

from .engine import CallFor, FunctionCall, Item, ModelCall, Plan, Rendered
from .engine.exchange import Exchange, aexchange, exchange
from .parsing import AnswerParser
from .prompts import hard_candidates, prompt_variables, render_prompt, soft_hint
from .types import LLMReply, LLMRequest, Message, ParsedAnswer

__all__ = [
    "AnswerParser",
    "CallFor",
    "Exchange",
    "FunctionCall",
    "Item",
    "LLMReply",
    "LLMRequest",
    "Message",
    "ModelCall",
    "ParsedAnswer",
    "Plan",
    "Rendered",
    "aexchange",
    "exchange",
    "hard_candidates",
    "prompt_variables",
    "render_prompt",
    "soft_hint",
]
