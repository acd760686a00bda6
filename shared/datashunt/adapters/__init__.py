"""What an adapter author writes against: the engine's hook and the values it passes.

A user builds a :class:`~datashunt.Shunt` and hands it to an adapter (``langchain_datashunt``,
``llamaindex_datashunt``, or one of your own). The adapter turns its framework's input into text
(and template variables), asks :meth:`Shunt.plan <datashunt.Shunt.plan>` for the decisions,
emits its own events, and runs the plan with :meth:`Shunt.run_plan <datashunt.Shunt.run_plan>`
and a :class:`ModelCall` that says how its model is called. Nothing else is restated: the
helpers re-exported here are the framework-neutral steps every adapter needs, by module:
``inputs`` (a dict input's text, image content blocks, a batch read with per-input errors),
``replies`` (a provider payload read as an :class:`LLMReply`: OpenAI-shape logprobs, usage),
``choices`` (labels mapped onto named tools or destinations), ``payloads`` (event payloads and
run metadata), ``options`` (keywords refused with a hint; a generative shunt from keywords, and
what a generative adapter inherits) and ``runner`` (one input's plan, run and stream).

Example:
    >>> from datashunt.adapters import ModelCall, Rendered
    >>> class EchoCall(ModelCall):
    ...     def render(self, request):
    ...         return Rendered(request.prompt, ())
    ...     def send(self, payload):
    ...         return "positive"
"""

from __future__ import annotations

from ..engine import CallFor, FunctionCall, Item, ModelCall, Plan, Rendered
from ..engine.exchange import Exchange, aexchange, exchange
from ..parsing import AnswerParser
from ..prompts import hard_candidates, prompt_variables, render_prompt, soft_hint
from ..types import LLMReply, LLMRequest, Message, ParsedAnswer
from .choices import LabelChoices, label_destinations, selection_reason
from .inputs import block_image_url, keyed_input, read_inputs, unclassifiable
from .options import (
    GENERATIVE_OPTIONS,
    GenerativeAdapter,
    generative_shunt,
    refuse_loose,
    refuse_unknown,
)
from .payloads import (
    decision_event,
    decision_metadata,
    drift_event,
    generative_summary,
    result_event,
    result_summary,
)
from .replies import (
    completion_body,
    model_name_of,
    openai_logprobs,
    payload_reply,
    unreadable_as_llm_error,
    wire_mapping,
)
from .runner import ShuntRunner, astream_plan, stream_plan

__all__ = [
    "GENERATIVE_OPTIONS",
    "AnswerParser",
    "CallFor",
    "Exchange",
    "FunctionCall",
    "GenerativeAdapter",
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
    "astream_plan",
    "block_image_url",
    "completion_body",
    "decision_event",
    "decision_metadata",
    "drift_event",
    "exchange",
    "generative_shunt",
    "generative_summary",
    "hard_candidates",
    "keyed_input",
    "label_destinations",
    "model_name_of",
    "openai_logprobs",
    "payload_reply",
    "prompt_variables",
    "read_inputs",
    "refuse_loose",
    "refuse_unknown",
    "render_prompt",
    "result_event",
    "result_summary",
    "selection_reason",
    "soft_hint",
    "stream_plan",
    "unclassifiable",
    "unreadable_as_llm_error",
    "wire_mapping",
]
