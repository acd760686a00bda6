"""The public API is pinned, and the core imports no framework (nor torch)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import datashunt

EXPECTED = {
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
}

ADAPTER_NAMES = {
    "GENERATIVE_OPTIONS",
    "AnswerParser",
    "CallFor",
    "Exchange",
    "FunctionCall",
    "GenerativeAdapter",
    "Item",
    "LLMReply",
    "LLMRequest",
    "LabelChoices",
    "Message",
    "ModelCall",
    "ParsedAnswer",
    "Plan",
    "Rendered",
    "ShuntRunner",
    "aexchange",
    "astream_plan",
    "block_image_url",
    "completion_body",
    "decision_event",
    "decision_metadata",
    "drift_event",
    "exchange",
    "generative_shunt",
    "generative_summary",
    "hard_candidates",
    "keyed_input",
    "label_destinations",
    "model_name_of",
    "openai_logprobs",
    "payload_reply",
    "prompt_variables",
    "read_inputs",
    "refuse_loose",
    "refuse_unknown",
    "render_prompt",
    "result_event",
    "result_summary",
    "selection_reason",
    "soft_hint",
    "stream_plan",
    "unclassifiable",
    "unreadable_as_llm_error",
    "wire_mapping",
}


def test_all_is_pinned() -> None:
    assert set(datashunt.__all__) == EXPECTED
    for name in datashunt.__all__:
        assert hasattr(datashunt, name), name


def test_all_is_sorted_and_the_adapter_face_is_its_own_module() -> None:
    import datashunt.adapters

    assert datashunt.__all__ == sorted(datashunt.__all__, key=lambda n: (not n.isupper(), n))
    assert set(datashunt.adapters.__all__) == ADAPTER_NAMES
    assert not (ADAPTER_NAMES - {"LLMReply", "LLMRequest"}) & set(datashunt.__all__)
    for name in ADAPTER_NAMES:
        assert hasattr(datashunt.adapters, name), name


def test_the_old_module_paths_are_gone() -> None:
    # release 0.1's paths were aliased by an import hook for one release; that release is out
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("datashunt.shunt")


def test_core_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, datashunt, datashunt.cli, datashunt.engine;"
        "bad=[m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core','langchain','llama_index','torch','transformers')];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
