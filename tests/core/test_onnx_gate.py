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

    from transformers import BertForSequenceClassification

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_FILE

    copy = Path(shutil.copytree(tiny_bert, tmp_path / "gate"))
    first = HFGate(copy, backend="onnx")
    stamp = (copy / (ONNX_FILE + ".json")).read_text(encoding="utf-8")
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # the same bytes (a copy): the export is kept
    HFGate(copy, backend="onnx")
    assert (copy / (ONNX_FILE + ".json")).read_text(encoding="utf-8") == stamp
    model = BertForSequenceClassification.from_pretrained(str(copy))
    with __import__("torch").no_grad():
        model.classifier.bias += 1.0  # a retrained model: new weights, exported again
    model.save_pretrained(str(copy))
    second = HFGate(copy, backend="onnx")
    assert second.weights_digest != first.weights_digest
    assert (copy / (ONNX_FILE + ".json")).read_text(encoding="utf-8") != stamp
    np.testing.assert_allclose(
        second.predict_logits(TEXTS), HFGate(copy).predict_logits(TEXTS), atol=1e-4
    )


def test_onnx_int8_is_close_to_fp32_cached_and_numpy_only(tiny_bert: Path) -> None:
    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_INT8_FILE

    fp32 = HFGate(tiny_bert)
    int8 = HFGate(tiny_bert, backend="onnx", quantize="int8", threads=1)
    cached = tiny_bert / ONNX_INT8_FILE
    assert int8._onnx.path == cached and cached.is_file()
    assert int8._onnx.session.get_session_options().intra_op_num_threads == 1
    # int8 MatMuls in the file: the weights are stored quantised
    assert "MatMulInteger" in {n.op_type for n in __import__("onnx").load(str(cached)).graph.node}
    np.testing.assert_allclose(int8.predict_proba(TEXTS), fp32.predict_proba(TEXTS), atol=0.02)
    # the single-input path; activations are quantised with each call's own range, so one
    # input alone is not bit-equal to the same input in a batch
    one = np.vstack([int8.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(one, int8.predict_proba(TEXTS), atol=0.02)
    mtime = cached.stat().st_mtime_ns
    HFGate(tiny_bert, backend="onnx", quantize="int8")
    assert cached.stat().st_mtime_ns == mtime


def test_onnx_int8_recipe_fuses_attention_and_keeps_the_sensitive_nodes_fp32(
    tiny_bert: Path,
) -> None:
    import onnx

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_INT8_FILE

    gate = HFGate(tiny_bert, backend="onnx", quantize="int8")
    # the export switched to the eager attention and back: the torch model keeps its own
    assert gate.model.config._attn_implementation != "eager"
    nodes = onnx.load(str(tiny_bert / ONNX_INT8_FILE)).graph.node
    ops = [n.op_type for n in nodes]
    layers = gate.model.config.num_hidden_layers
    assert ops.count("QAttention") == layers  # every attention fused, its weights in int8
    assert "Attention" not in ops and "SkipLayerNormalization" not in ops
    # kept fp32: the embeddings and the first FFN output projection (one MatMul)
    assert "EmbedLayerNormalization" in ops and "QEmbedLayerNormalization" not in ops
    fp32 = [n.name for n in nodes if n.op_type == "MatMul"]
    assert fp32 == ["/bert/encoder/layer.0/output/dense/MatMul"]
    assert "/bert/encoder/layer.1/output/dense/MatMul_quant" in {n.name for n in nodes}
    options = gate._onnx.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnx_refuses_other_precisions(tiny_bert: Path) -> None:
    from datashunt.gates import HFGate

    with pytest.raises(ConfigError, match="backend must be"):
        HFGate(tiny_bert, backend="onnx", quantize="bf16")
    with pytest.raises(ConfigError, match="backend must be"):
        HFGate(tiny_bert, backend="tensorrt")


def test_batch_backends_name_the_gate_options(tiny_bert: Path) -> None:
    from datashunt.batch.score import BACKENDS, GateScorer

    scorer = GateScorer(tiny_bert, "onnx-int8")
    assert (scorer.gate.backend, scorer.gate.quantize) == ("onnx", "int8")
    out = scorer({"_row": np.arange(2), "text": np.array(["good", "bad"])})
    np.testing.assert_allclose(out["p0"] + out["p1"], 1.0)
    assert set(BACKENDS) == {"torch", "int8", "bf16", "onnx", "onnx-int8"}
    with pytest.raises(ConfigError, match="backend must be one of"):
        GateScorer(tiny_bert, "fp8")


def test_calibrate_on_onnx_int8_writes_the_file_and_pins_the_weights(
    tiny_bert: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from datashunt.cli import main
    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_INT8_FILE

    gate = Path(shutil.copytree(tiny_bert, tmp_path / "gate"))
    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "good great,positive\nbad awful,negative\n" * 30)
    argv = ["calibrate", "--gate", str(gate), "--data", str(data), "--target", "budget:0.5"]
    assert main([*argv, "--backend", "onnx", "--quantize", "int8"]) == 0
    assert (gate / ONNX_INT8_FILE).is_file()
    policy = json.loads((gate / "datashunt_policy.json").read_text(encoding="utf-8"))
    assert policy["gate_digest"] == HFGate(gate).weights_digest
