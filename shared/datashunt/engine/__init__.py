"""The engine: one shunt, one LLM call lifecycle, and the hook adapters plug into.

:class:`Shunt` validates once, decides with one gate pass, prepares the prompts and asks the
LLM through :meth:`Shunt.ask` / :meth:`Shunt.aask` (and their streaming forms), the only place
an LLM call is timed, retried, parsed and recorded. An adapter supplies a :class:`ModelCall`:
how to render a request for its model and how to send it.
"""

from __future__ import annotations

from .calls import AsyncLLMCall, FunctionCall, LLMCall, ModelCall, Rendered
from .idle import StreamIdleError, aiter_with_idle_timeout, iter_with_idle_timeout
from .records import call_record, describe_error
from .shunt import Shunt
from .steps import OnError, ShuntSteps

__all__ = [
    "AsyncLLMCall",
    "FunctionCall",
    "LLMCall",
    "ModelCall",
    "OnError",
    "Rendered",
    "Shunt",
    "ShuntSteps",
    "StreamIdleError",
    "aiter_with_idle_timeout",
    "call_record",
    "describe_error",
    "iter_with_idle_timeout",
]
