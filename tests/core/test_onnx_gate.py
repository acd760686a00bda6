"""HFGate on ONNX Runtime: the same probabilities as torch, exported once and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datashunt.errors import ConfigError

pytest.importorskip("onnxruntime")

TEXTS = ["this is good", "not bad at all, very product", "a", "book " * 40]


def test_onnx_matches_torch_and_is_cached(tiny_bert: Path) -> None:
    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_FILE

    torch_gate = HFGate(tiny_bert)
    onnx_gate = HFGate(tiny_bert, backend="onnx")
    cached = tiny_bert / ONNX_FILE
    assert cached.is_file()
    np.testing.assert_allclose(
        onnx_gate.predict_proba(TEXTS), torch_gate.predict_proba(TEXTS), atol=1e-5
    )
    mtime = cached.stat().st_mtime_ns
    HFGate(tiny_bert, backend="onnx")  # a second open loads the file, exports nothing
    assert cached.stat().st_mtime_ns == mtime


def test_onnx_export_is_redone_when_the_weights_change(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_FILE

    copy = Path(shutil.copytree(tiny_bert, tmp_path / "gate"))
    HFGate(copy, backend="onnx")
    stamp = (copy / (ONNX_FILE + ".json")).read_text(encoding="utf-8")
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # new mtime: a retrained model
    HFGate(copy, backend="onnx")
    assert (copy / (ONNX_FILE + ".json")).read_text(encoding="utf-8") != stamp


def test_onnx_refuses_quantize(tiny_bert: Path) -> None:
    from datashunt.gates import HFGate

    with pytest.raises(ConfigError, match="backend must be"):
        HFGate(tiny_bert, backend="onnx", quantize="int8")
