"""The gate on a GPU (``device=``): clear errors where there is none, the same answers where
there is one (the GPU half runs only on a machine whose torch sees a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datashunt.batch import BatchConfig
from datashunt.batch.score import GateScorer
from datashunt.errors import ConfigError
from datashunt.gates import HFGate

torch = pytest.importorskip("torch")
GPU = torch.cuda.is_available()
TEXTS = ["good", "bad and awful " * 30, "a plain sentence", "great, really great", "meh"]


def test_auto_is_cpu_without_a_gpu_and_a_named_gpu_is_a_clear_error(tiny_bert: Path) -> None:
    if GPU:
        pytest.skip("this machine has a GPU: the CPU-only errors do not apply")
    assert HFGate(tiny_bert, device="auto").device == "cpu"
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        HFGate(tiny_bert, device="cuda")


def test_bad_device_names_and_cpu_only_paths_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="device must be"):
        HFGate(tiny_bert, device="tpu")
    with pytest.raises(ConfigError, match="backend must be torch, int8 or onnx|CPU paths"):
        BatchConfig(
            tmp_path / "in.csv", tmp_path / "o.parquet", tiny_bert, llm_column="a",
            backend="int8", device="cuda",
        )  # fmt: skip


@pytest.mark.skipif(not GPU, reason="needs a GPU that torch sees")
def test_gpu_gate_gives_the_cpu_probabilities(tiny_bert: Path) -> None:
    cpu = HFGate(tiny_bert).predict_proba(TEXTS)
    gpu_gate = HFGate(tiny_bert, device="cuda", batch_size=512, max_batch_tokens=131_072)
    assert next(gpu_gate.model.parameters()).device.type == "cuda"
    np.testing.assert_allclose(gpu_gate.predict_proba(TEXTS), cpu, atol=1e-4)
    scorer = GateScorer(tiny_bert, device="cuda")
    out = scorer({"_row": np.arange(len(TEXTS)), "text": np.array(TEXTS, dtype=object)})
    np.testing.assert_allclose(np.column_stack([out["p0"], out["p1"]]), cpu, atol=1e-4)
