"""LangChain adapter for datashunt: the shunt as runnables, a router, callbacks and middleware.

``DataShuntMiddleware`` needs the ``langchain`` package (agents API); it is imported on first
use, so the rest works with ``langchain-core`` alone.
"""

from __future__ import annotations

from typing import Any

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in tests/core/test_packaging.py
    raise ImportError(
        "langchain_datashunt needs LangChain: pip install 'datashunt[langchain]'"
    ) from exc

from .callbacks import AsyncDataShuntCallbackHandler, DataShuntCallbackHandler
from .chat_model import DataShuntChatModel
from .output import ShuntOutput
from .router import DataShuntRouter
from .runnable import DECISION_EVENT, DRIFT_EVENT, RECEIPT_EVENT, DataShuntRunnable

__all__ = [
    "DECISION_EVENT",
    "DRIFT_EVENT",
    "RECEIPT_EVENT",
    "AsyncDataShuntCallbackHandler",
    "DataShuntCallbackHandler",
    "DataShuntChatModel",
    "DataShuntMiddleware",
    "DataShuntRouter",
    "DataShuntRunnable",
    "ShuntOutput",
]


def __getattr__(name: str) -> Any:
    if name == "DataShuntMiddleware":
        from .middleware import DataShuntMiddleware

        return DataShuntMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
