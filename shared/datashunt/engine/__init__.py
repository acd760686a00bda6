"""The engine: one shunt, one LLM call lifecycle, and the hook adapters plug into.

:class:`Shunt` validates once, decides with one gate pass, prepares the prompts and asks the
LLM through :meth:`Shunt.ask` / :meth:`Shunt.aask` (and their streaming forms), the only place
an LLM call is timed, retried, parsed and recorded (the timed, retried send itself is
:func:`exchange`, which the generative gate's escalation shares). An adapter supplies a
:class:`ModelCall`: how to render a request for its model and how to send it.
"""

from __future__ import annotations

from .calls import AsyncLLMCall, FunctionCall, LLMCall, ModelCall, Rendered
from .drift import DriftAlarm, DriftMonitor, DriftWarning
from .exchange import Exchange, aexchange, exchange
from .idle import StreamIdleError, aiter_with_idle_timeout, iter_with_idle_timeout
from .receipts import Price, price_table
from .records import call_record, describe_error
from .shunt import Shunt
from .steps import OnError, ShuntSteps
from .watch import Watch

__all__ = [
    "AsyncLLMCall",
    "DriftAlarm",
    "DriftMonitor",
    "DriftWarning",
    "Exchange",
    "FunctionCall",
    "LLMCall",
    "ModelCall",
    "OnError",
    "Price",
    "Rendered",
    "Shunt",
    "ShuntSteps",
    "StreamIdleError",
    "Watch",
    "aexchange",
    "aiter_with_idle_timeout",
    "call_record",
    "describe_error",
    "exchange",
    "iter_with_idle_timeout",
    "price_table",
]
