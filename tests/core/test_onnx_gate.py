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


def test_onnx_int8_recipe_fuses_and_quantises_every_matmul(tiny_bert: Path) -> None:
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
    assert ops.count("FastGelu") == layers  # GELU in its tanh form, the bias fused
    assert "Attention" not in ops and "SkipLayerNormalization" not in ops
    assert "EmbedLayerNormalization" in ops and "QEmbedLayerNormalization" not in ops
    # every FFN output projection in int8; fp32 MatMuls only for outlier input channels
    names = {n.name for n in nodes}
    for layer in range(layers):
        assert f"/bert/encoder/layer.{layer}/output/dense/MatMul_quant" in names
    assert all(n.name.endswith("_outliers") for n in nodes if n.op_type == "MatMul")
    options = gate._onnx.session.get_session_options()
    assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"


def test_onnx_sessions_spin_only_during_a_call_and_plan_no_memory_pattern(tiny_bert: Path) -> None:
    import time

    from datashunt.gates import HFGate

    gate = HFGate(tiny_bert, backend="onnx", quantize="int8", threads=2)
    options = gate._onnx.session.get_session_options()
    # spinning between a call's operators (each wake-up of a sleeping worker costs time)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    idle = []
    for _ in range(3):
        gate.predict_proba(TEXTS * 8)
        start = time.process_time()
        time.sleep(0.1)  # the cores are the caller's again: no worker still spinning
        idle.append(time.process_time() - start)
    # a pool left spinning takes about 28 ms of this process's CPU in these 100 ms
    assert min(idle) < 0.008, idle
    # no memory pattern planned per input shape (a gate meets a new shape on most calls)
    assert options.enable_mem_pattern is False


def test_outlier_channels_split_off_keep_the_products(tiny_bert: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from transformers import AutoTokenizer

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_FILE
    from datashunt.gates.onnx_int8 import (
        activation_peaks,
        calibration_batches,
        fuse,
        split_outlier_channels,
    )

    HFGate(tiny_bert, backend="onnx")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    batches = calibration_batches(tok, max_tokens=32)
    assert len(batches) == 8 and all(b["input_ids"].shape[1] <= 32 for b in batches)
    plain = fuse(tiny_bert / ONNX_FILE, num_heads=2, hidden_size=32)
    inits = {t.name: t for t in plain.graph.initializer}
    gelus = [n for n in plain.graph.node if n.op_type == "FastGelu"]
    for gelu in gelus:
        # channel 3 of each FFN input made an outlier, as in MiniLM (its GELU's bias + 8)
        bias = numpy_helper.to_array(inits[gelu.input[1]]).copy()
        bias[3] += 8.0
        inits[gelu.input[1]].CopyFrom(numpy_helper.from_array(bias, gelu.input[1]))
    split = onnx.ModelProto()
    split.CopyFrom(plain)
    kept = split_outlier_channels(split, batches)
    assert len(kept) == len(gelus) == 2
    nodes = {n.name: n for n in split.graph.node}
    for name in kept:  # the fp32 MatMul takes channel 3 alone; the int8 one the rest
        index = next(t for t in split.graph.initializer if t.name == nodes[name + "_pick"].input[1])
        assert numpy_helper.to_array(index).tolist() == [3]
    # the int8 MatMuls' inputs (the big GELUs' outputs) hold the outliers as zeros
    rest = activation_peaks(split, [nodes[k[: -len("_outliers")]].input[0] for k in kept], batches)
    before = activation_peaks(plain, [g.output[0] for g in gelus], batches)
    for b, r in zip(before.values(), rest.values(), strict=True):
        assert b.argmax() == 3 and r[3] == 0.0 and r.max() < b.max() / 4

    def logits(model: onnx.ModelProto) -> np.ndarray:
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {i.name: batches[0][i.name] for i in s.get_inputs()}
        return np.asarray(s.run(["logits"], feed)[0])

    np.testing.assert_allclose(logits(split), logits(plain), atol=1e-5)


def test_an_int8_file_of_another_recipe_is_made_again(tiny_bert: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import ONNX_INT8_FILE
    from datashunt.gates.onnx_int8 import RECIPE

    gate = Path(shutil.copytree(tiny_bert, tmp_path / "gate"))
    HFGate(gate, backend="onnx", quantize="int8")
    stamp_file = gate / (ONNX_INT8_FILE + ".json")
    stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
    assert stamp["recipe"] == RECIPE
    (gate / ONNX_INT8_FILE).write_bytes(b"made by an older recipe")
    stamp_file.write_text(json.dumps({**stamp, "recipe": "older"}), encoding="utf-8")
    again = HFGate(gate, backend="onnx", quantize="int8")  # would fail to load the old bytes
    assert json.loads(stamp_file.read_text(encoding="utf-8")) == stamp
    assert again.predict_proba(TEXTS).shape == (len(TEXTS), 2)


def test_onnx_sessions_leave_the_callers_denormal_setting_alone(tiny_bert: Path) -> None:
    import torch

    from datashunt.gates import HFGate
    from datashunt.gates.onnx import _flushing

    tiny = np.float32(1e-39)
    assert not _flushing()
    gate = HFGate(tiny_bert, backend="onnx", quantize="int8")  # ONNX Runtime sets it here
    gate.predict_proba(TEXTS)
    assert not _flushing() and tiny * np.float32(1.0) == tiny
    torch.set_flush_denormal(True)  # the caller's own choice is kept too
    try:
        gate.predict_proba(TEXTS[:1])
        assert _flushing()
    finally:
        torch.set_flush_denormal(False)


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
