"""The public API is pinned, and the core imports no framework (nor torch)."""

from __future__ import annotations

import subprocess
import sys

import datashunt

EXPECTED = {
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
    "ShuntResult",
    "DriftMonitor",
    "DriftWarning",
    "Price",
    "Receipt",
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
}


def test_all_is_pinned() -> None:
    assert set(datashunt.__all__) == EXPECTED
    for name in datashunt.__all__:
        assert hasattr(datashunt, name), name


def test_core_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, datashunt, datashunt.cli, datashunt.engine;"
        "bad=[m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core','langchain','llama_index','torch','transformers')];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
