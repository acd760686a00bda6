"""The public API of llamaindex_datashunt is pinned, and it pulls in no other framework."""

from __future__ import annotations

import subprocess
import sys

import llamaindex_datashunt

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(llamaindex_datashunt.__all__) == EXPECTED
    for name in llamaindex_datashunt.__all__:
        assert hasattr(llamaindex_datashunt, name), name


def test_adapter_imports_no_langchain_no_torch_and_no_openai_sdk() -> None:
    code = (
        "import sys, llamaindex_datashunt;"
        "bad=[m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core','langchain','torch','transformers','openai')];"
        "print(','.join(sorted(set(m.split('.')[0] for m in bad))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_old_name_of_the_openai_like_llm_warns() -> None:
    import pytest

    import llamaindex_datashunt

    with pytest.warns(DeprecationWarning, match="OpenAILikeLLM"):
        old = llamaindex_datashunt.OpenAICompatibleLLM
    assert old is llamaindex_datashunt.OpenAILikeLLM
