"""The generative gate: a small chat model answers first, the large one when it is unsure.

The Data Shunt paper's captioning set-up: the route is decided by the small model's sequence
confidence (:mod:`~datashunt.generative.confidence`), with δ calibrated on prompts with
acceptable answers (:func:`calibrate_generative`). The adapters are
``langchain_datashunt.DataShuntChatModel`` and ``llamaindex_datashunt.DataShuntGenerativeLLM``.
"""

from __future__ import annotations

from .confidence import MEASURES, Measure, SequenceConfidence, auroc, sequence_confidence
from .policy import (
    GENERATIVE_POLICY_FILE,
    GenerativeCalibration,
    GenerativePolicy,
    acceptable,
    calibrate_generative,
)
from .shunt import AsyncChatFn, ChatFn, GenerativeResult, GenerativeShunt, Judgement

__all__ = [
    "GENERATIVE_POLICY_FILE",
    "MEASURES",
    "AsyncChatFn",
    "ChatFn",
    "GenerativeCalibration",
    "GenerativePolicy",
    "GenerativeResult",
    "GenerativeShunt",
    "Judgement",
    "Measure",
    "SequenceConfidence",
    "acceptable",
    "auroc",
    "calibrate_generative",
    "sequence_confidence",
]
