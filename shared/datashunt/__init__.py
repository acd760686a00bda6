"""datashunt: a small local classifier in front of any chat model (Data Shunt, AAAI-24).

The core knows no framework: ``langchain_datashunt`` and ``llamaindex_datashunt`` adapt it.
Heavy dependencies (torch, transformers) load only when a Hugging Face gate is built.
"""

from __future__ import annotations

from . import _moved
from ._version import __version__
from .data import Dataset, Example, read_dataset
from .engine import DriftMonitor, DriftWarning, ModelCall, Price, Rendered, Shunt
from .errors import (
    ConfigError,
    DataError,
    DataShuntError,
    GateError,
    InputError,
    LLMError,
    ModelNotFoundError,
    StoreError,
)
from .gates import BaseGate, EmbeddingGate, Gate, HFGate, load_gate
from .llm.retry import RetryPolicy
from .parsing import AnswerParser
from .policy import ShuntPolicy
from .prompts import DEFAULT_TEMPLATE, hard_candidates, prompt_variables, soft_hint
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
    choose_threshold,
    distill_gate,
    fit_temperature,
    train_gate,
)
from .transfer import PromptTransfer, TransferResult
from .types import Decision, LLMReply, LLMRequest, Message, ParsedAnswer, Receipt, ShuntResult

_moved.install()  # the module paths of 0.1 (datashunt.retry, ...) still import, with a warning

__all__ = [
    "DEFAULT_TEMPLATE",
    "AnswerParser",
    "BaseGate",
    "Budget",
    "CalibrationReport",
    "CallRecord",
    "CallStore",
    "ConfigError",
    "DataError",
    "DataShuntError",
    "DriftMonitor",
    "DriftWarning",
    "Dataset",
    "Decision",
    "DistillConfig",
    "DistillReport",
    "Distiller",
    "EmbeddingGate",
    "Example",
    "Gate",
    "GateError",
    "HFGate",
    "InputError",
    "LLMError",
    "LLMReply",
    "LLMRequest",
    "MaxAccuracy",
    "Message",
    "ModelCall",
    "ModelNotFoundError",
    "ParsedAnswer",
    "PrecisionFloor",
    "PromptTransfer",
    "Rendered",
    "RetryPolicy",
    "Shunt",
    "ShuntPolicy",
    "Price",
    "Receipt",
    "ShuntResult",
    "StoreError",
    "TrainConfig",
    "TransferResult",
    "__version__",
    "calibrate",
    "choose_threshold",
    "distill_gate",
    "fit_temperature",
    "hard_candidates",
    "load_gate",
    "prompt_variables",
    "read_dataset",
    "soft_hint",
    "train_gate",
]
