"""The engine: one shunt, one LLM call lifecycle, and the hook adapters plug into.

:class:`Shunt` runs the whole request: :meth:`Shunt.plan` validates once, decides with one
gate pass and prepares the prompts; :meth:`Shunt.run_plan` answers the plan (the gate's answers,
audits, the LLM calls in input order). Every LLM call goes through :meth:`Shunt.ask` /
:meth:`Shunt.aask` (and their streaming forms), the only place an LLM call is timed, retried,
parsed and recorded (the timed, retried send itself is
:func:`exchange`, which the generative gate's escalation shares). An adapter supplies a
:class:`ModelCall`: how to render a request for its model and how to send it.
"""

from __future__ import annotations

from .calls import AsyncLLMCall, FunctionCall, LLMCall, ModelCall, Rendered
from .drift import DriftAlarm, DriftMonitor, DriftWarning
from .exchange import Exchange, aexchange, exchange
from .idle import StreamIdleError, aiter_with_idle_timeout, iter_with_idle_timeout
from .options import OnError, ShuntOptions
from .plan import Item, Plan
from .receipts import Price, PriceTable, UnpricedModelWarning, price_table
from .records import call_record, describe_error
from .run import CallFor
from .shunt import Shunt
from .steps import ShuntSteps
from .watch import Watch

__all__ = [
    "AsyncLLMCall",
    "CallFor",
    "DriftAlarm",
    "DriftMonitor",
    "DriftWarning",
    "Exchange",
    "FunctionCall",
    "Item",
    "LLMCall",
    "ModelCall",
    "OnError",
    "Plan",
    "Price",
    "PriceTable",
    "Rendered",
    "Shunt",
    "ShuntOptions",
    "ShuntSteps",
    "StreamIdleError",
    "UnpricedModelWarning",
    "Watch",
    "aexchange",
    "aiter_with_idle_timeout",
    "call_record",
    "describe_error",
    "exchange",
    "iter_with_idle_timeout",
    "price_table",
]
