"""datashunt: a small local classifier in front of any chat model (Data Shunt, AAAI-24).

The core knows no framework: ``langchain_datashunt`` and ``llamaindex_datashunt`` adapt it.
Heavy dependencies (torch, transformers) load only when a Hugging Face gate is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .data import Dataset, Example, read_dataset
from .engine import DriftMonitor, Price, Shunt, ShuntOptions
from .engine.watch import monitor_for
from .errors import (
    ConfigError,
    DataError,
    DataShuntError,
    DriftWarning,
    GateError,
    InputError,
    LLMError,
    ModelNotFoundError,
    StoreError,
)
from .gates import BaseGate, EmbeddingGate, Gate, HFGate, HFImageGate, load_gate
from .generative import GenerativePolicy, GenerativeShunt
from .llm.retry import RetryPolicy
from .policy import ShuntPolicy
from .prompts import DEFAULT_TEMPLATE
from .registry import GateRegistry
from .store import CallRecord, CallStore
from .training import (
    Budget,
    CalibrationReport,
    DistillConfig,
    Distiller,
    DistillReport,
    MaxAccuracy,
    PrecisionFloor,
    TrainConfig,
    calibrate,
    distill_gate,
    train_gate,
)
from .transfer import PromptTransfer, TransferResult
from .types import Decision, LLMReply, LLMRequest, Receipt, ShuntResult

#: What a user writes, sorted. Adapter authors: :mod:`datashunt.adapters`; training
#: internals: :mod:`datashunt.training`.
__all__ = [
    "DEFAULT_TEMPLATE",
    "BaseGate",
    "Budget",
    "CalibrationReport",
    "CallRecord",
    "CallStore",
    "ConfigError",
    "DataError",
    "DataShuntError",
    "Dataset",
    "Decision",
    "DistillConfig",
    "DistillReport",
    "Distiller",
    "DriftMonitor",
    "DriftWarning",
    "EmbeddingGate",
    "Example",
    "Gate",
    "GateError",
    "GateRegistry",
    "GenerativePolicy",
    "GenerativeShunt",
    "HFGate",
    "HFImageGate",
    "InputError",
    "LLMError",
    "LLMReply",
    "LLMRequest",
    "LLMServer",
    "MaxAccuracy",
    "ModelNotFoundError",
    "OpenAICompatLLM",
    "PrecisionFloor",
    "Price",
    "PromptTransfer",
    "Receipt",
    "RetryPolicy",
    "Shunt",
    "ShuntOptions",
    "ShuntPolicy",
    "ShuntResult",
    "StoreError",
    "TrainConfig",
    "TransferResult",
    "__version__",
    "calibrate",
    "distill_gate",
    "load_gate",
    "monitor_for",
    "read_dataset",
    "train_gate",
]

# Loaded on first use (the OpenAI SDK, the server's process handling), so `import datashunt`
# stays light; and the names an adapter writes against, still found here for older code.
_LAZY = {
    "OpenAICompatLLM": "datashunt.llm",
    "LLMServer": "datashunt.llm",
    **dict.fromkeys(
        ("AnswerParser", "Message", "ModelCall", "ParsedAnswer", "Rendered"), "datashunt.adapters"
    ),
    **dict.fromkeys(("hard_candidates", "prompt_variables", "soft_hint"), "datashunt.prompts"),
    **dict.fromkeys(("choose_threshold", "fit_temperature"), "datashunt.training"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datashunt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
