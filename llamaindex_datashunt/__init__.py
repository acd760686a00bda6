"""llamaindex_datashunt: the datashunt gate for LlamaIndex.

Thin adapters over :class:`datashunt.Shunt`:

* :class:`DataShuntSelector`: a ``BaseSelector`` for ``RouterQueryEngine`` / ``RouterRetriever``.
* :class:`DataShuntWorkflow`: the shunt as a Workflow (classify, gate answer, LLM answer).
* :class:`DataShuntLLM`: an ``LLM`` that answers classification calls with the gate when sure.
* :class:`DataShuntGenerativeLLM`: a small LLM answers first, a large one when it is unsure.
* :class:`DataShuntEventHandler`: records LlamaIndex's own LLM calls into the call store.
* :class:`OpenAICompatibleLLM`: a small LLM for OpenAI-compatible servers (the local one).
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
from .openai_compat import OpenAICompatibleLLM
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
    "OpenAICompatibleLLM",
    "ShuntDriftEvent",
    "ShuntProgressEvent",
    "ShuntReceiptEvent",
    "ShuntStartEvent",
    "UncertainEvent",
]
