"""datashunt: a small local classifier in front of any chat model (Data Shunt, AAAI-24).

The core knows no framework: ``langchain_datashunt`` and ``llamaindex_datashunt`` adapt it.
Heavy dependencies (torch, transformers) load only when a Hugging Face gate is built.
"""

from __future__ import annotations

from ._version import __version__
from .calibration import (
    Budget,
    CalibrationReport,
    MaxAccuracy,
    PrecisionFloor,
    calibrate,
    choose_threshold,
    fit_temperature,
)
from .data import Dataset, Example, read_dataset
from .distill import DistillConfig, Distiller, distill_gate
from .distill_report import DistillReport
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
from .parsing import AnswerParser
from .policy import ShuntPolicy
from .prompts import DEFAULT_TEMPLATE, hard_candidates, prompt_variables, soft_hint
from .retry import RetryPolicy
from .shunt import Shunt
from .store import CallRecord, CallStore
from .train import TrainConfig, train_gate
from .transfer import PromptTransfer, TransferResult
from .types import Decision, LLMReply, LLMRequest, ParsedAnswer, ShuntResult

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
    "ModelNotFoundError",
    "ParsedAnswer",
    "PrecisionFloor",
    "PromptTransfer",
    "RetryPolicy",
    "Shunt",
    "ShuntPolicy",
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
