"""llamaindex_datashunt: the datashunt gate for LlamaIndex.

Thin adapters over :class:`datashunt.Shunt`:

* :class:`DataShuntSelector`: a ``BaseSelector`` for ``RouterQueryEngine`` / ``RouterRetriever``.
* :class:`DataShuntWorkflow`: the shunt as a Workflow (classify, gate answer, LLM answer).
* :class:`DataShuntLLM`: an ``LLM`` that answers classification calls with the gate when sure.
* :class:`DataShuntGenerativeLLM`: a small LLM answers first, a large one when it is unsure.
* :class:`DataShuntEventHandler`: records LlamaIndex's own LLM calls into the call store.
* :class:`OpenAILikeLLM`: a small LLM for OpenAI-compatible servers (the local one).
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in tests/core/test_packaging.py
    raise ImportError(
        "llamaindex_datashunt needs LlamaIndex: pip install 'datashunt[llamaindex]'"
    ) from exc

from .events import ShuntDriftEvent, ShuntReceiptEvent
from .generative import DataShuntGenerativeLLM
from .handler import DataShuntEventHandler
from .llm import DEFAULT_INSTRUCTION, DataShuntLLM
from .openai_compat import OpenAILikeLLM
from .selector import DEFAULT_SELECTOR_TEMPLATE, DataShuntSelection, DataShuntSelector
from .workflow import (
    ConfidentEvent,
    DataShuntWorkflow,
    ShuntProgressEvent,
    ShuntStartEvent,
    UncertainEvent,
)

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_SELECTOR_TEMPLATE",
    "ConfidentEvent",
    "DataShuntEventHandler",
    "DataShuntGenerativeLLM",
    "DataShuntLLM",
    "DataShuntSelection",
    "DataShuntSelector",
    "DataShuntWorkflow",
    "OpenAILikeLLM",
    "ShuntDriftEvent",
    "ShuntProgressEvent",
    "ShuntReceiptEvent",
    "ShuntStartEvent",
    "UncertainEvent",
]


def __getattr__(name: str) -> object:
    # the name of release 0.2, a near-namesake of the core's OpenAICompatLLM (a plain callable)
    if name == "OpenAICompatibleLLM":
        import warnings

        warnings.warn(
            "OpenAICompatibleLLM is now OpenAILikeLLM (a LlamaIndex LLM; the core's callable "
            "client is datashunt.OpenAICompatLLM)",
            DeprecationWarning,
            stacklevel=2,
        )
        return OpenAILikeLLM
    raise AttributeError(f"module 'llamaindex_datashunt' has no attribute {name!r}")
