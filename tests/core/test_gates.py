from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datashunt import ConfigError, HFGate, InputError, ModelNotFoundError, ShuntPolicy, load_gate
from datashunt.gates import softmax

LABELS = ("negative", "positive")


def test_hf_gate_shapes_and_labels(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert)
    assert gate.labels == ("negative", "positive")
    p = gate.predict_proba(["good movie", "bad", "the book was very boring and sad"])
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert gate.predict_proba([]).shape == (0, 2)


def test_length_bucketing_keeps_input_order(tiny_bert: Path) -> None:
    texts = ["good " * n + "bad" for n in (9, 1, 30, 4, 0, 17)]
    batched = HFGate(tiny_bert, batch_size=2).predict_logits(texts)
    one_by_one = np.vstack([HFGate(tiny_bert, batch_size=1).predict_logits([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_huge_input_is_truncated_safely(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert, max_length=32)
    huge = "great " * 20_000  # 120k characters
    assert gate.max_length == 32
    p = gate.predict_proba([huge, "great"])
    assert np.isfinite(p).all()


def test_temperature_from_policy_file(tiny_bert: Path, tmp_path: Path) -> None:
    d = tmp_path / "gate"
    shutil.copytree(tiny_bert, d)
    base = HFGate(d)
    ShuntPolicy(labels=base.labels, temperature=3.0).save(d)
    warm = HFGate(d)
    assert warm.temperature == 3.0
    text = ["good great excellent"]
    np.testing.assert_allclose(
        warm.predict_proba(text), softmax(base.predict_logits(text), 3.0), atol=1e-9
    )
    assert HFGate(d, temperature=0.5).temperature == 0.5


def test_bad_inputs(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert)
    with pytest.raises(InputError, match="single string"):
        gate.predict_proba("good")
    with pytest.raises(InputError, match="input 1 must be a str"):
        gate.predict_proba(["good", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="input 0 is empty"):
        gate.predict_proba(["  "])


def test_missing_and_unsafe_models(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        HFGate(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        HFGate("bert-base-uncased")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        HFGate(tmp_path)
    d = tmp_path / "pickled"
    shutil.copytree(tiny_bert, d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelNotFoundError, match="pickle weights"):
        HFGate(d)


def test_load_gate_dispatches_to_hf(tiny_bert: Path) -> None:
    assert isinstance(load_gate(tiny_bert), HFGate)


def test_single_label_gate(tmp_path: Path) -> None:
    from tests.conftest import build_tiny_bert

    gate = HFGate(build_tiny_bert(tmp_path / "one", labels=("only",)))
    p = gate.predict_proba(["anything at all"])
    assert p.shape == (1, 1) and p[0, 0] == pytest.approx(1.0)


def test_embedding_gate_head_validation(tmp_path: Path) -> None:
    from datashunt import EmbeddingGate

    with pytest.raises(ModelNotFoundError, match="train-gate --kind embedding"):
        EmbeddingGate.load(tmp_path)
    (tmp_path / "datashunt_gate.json").write_text(json.dumps({"type": "embedding"}))
    with pytest.raises(ModelNotFoundError):
        load_gate(tmp_path)


def test_tiny_bert_fixture_knows_its_words(tiny_bert: Path) -> None:
    # guards the fixture itself: a vocabulary that maps every word to [UNK] makes gate tests
    # pass without exercising the model (transformers 5 ignores BertTokenizerFast(vocab_file=))
    gate = HFGate(tiny_bert)
    ids = gate.tokenizer("good bad", add_special_tokens=False)["input_ids"]
    assert gate.tokenizer.unk_token_id not in ids and len(set(ids)) == 2


def test_hf_buckets_hold_a_token_budget(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert, batch_size=32, max_length=64, max_batch_tokens=256)
    short, long = "good", "word " * 200  # ~3 and the full 64 estimated tokens
    texts = [long, short] * 20
    buckets = gate.buckets(texts)
    assert sorted(int(i) for b in buckets for i in b) == list(range(40))  # each input once
    for b in buckets:
        est = max(min(64, len(texts[i]) // 4 + 2) for i in b)
        assert len(b) == 1 or len(b) * est <= 256
        assert len(b) <= 32
    sizes = {texts[b[0]] == short: len(b) for b in buckets}
    assert sizes[True] == 20 and sizes[False] == 4  # short ones share one pass, long ones 4 each
    # bucketing changes what runs together, never the answers
    one = HFGate(tiny_bert, batch_size=1, max_length=64)
    np.testing.assert_allclose(gate.predict_proba(texts), one.predict_proba(texts), atol=1e-5)


def test_hf_int8_gate_answers_close_to_fp32(tiny_bert: Path) -> None:
    fp32 = HFGate(tiny_bert)
    int8 = HFGate(tiny_bert, quantize="int8")
    texts = ["good product", "awful", "it is fine i guess"]
    assert int8.quantize == "int8" and fp32.quantize is None
    np.testing.assert_allclose(int8.predict_proba(texts), fp32.predict_proba(texts), atol=0.05)
    with pytest.raises(ConfigError, match="quantize"):
        HFGate(tiny_bert, quantize="int4")
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        HFGate(tiny_bert, max_batch_tokens=0)


# ---- gate folders that must not be served (issue 27 item 7) -----------------------------------


def _headless(tiny_bert: Path, out: Path) -> Path:
    """The tiny BERT's encoder saved without its classifier head (what a backbone folder is)."""
    from transformers import BertForSequenceClassification

    shutil.copytree(tiny_bert, out)
    (out / "model.safetensors").unlink()
    BertForSequenceClassification.from_pretrained(str(tiny_bert)).bert.save_pretrained(str(out))
    return out


def test_a_folder_without_a_classifier_head_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    from datashunt import GateError

    with pytest.raises(GateError, match="no trained classifier head.*classifier.weight"):
        HFGate(_headless(tiny_bert, tmp_path / "backbone"))


def test_truncated_weights_name_the_file(tiny_bert: Path, tmp_path: Path) -> None:
    from datashunt import GateError

    d = Path(shutil.copytree(tiny_bert, tmp_path / "torn"))
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(GateError, match=r"torn/model\.safetensors .*truncated"):
        HFGate(d)


def test_cli_refuses_torn_and_headless_gates_in_one_line(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datashunt.cli import main

    data = tmp_path / "dev.csv"
    data.write_text("text,label\n" + "good great,positive\nbad awful,negative\n" * 30)
    torn = Path(shutil.copytree(tiny_bert, tmp_path / "torn"))
    w = torn / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    headless = _headless(tiny_bert, tmp_path / "backbone")
    for gate_dir, says in ((torn, "model.safetensors"), (headless, "classifier head")):
        code = main(["calibrate", "--gate", str(gate_dir), "--data", str(data)])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.startswith("datashunt: error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert says in lines[0] and "labels" not in lines[0]


def test_the_policy_pins_the_gate_it_was_fitted_on(tiny_bert: Path, tmp_path: Path) -> None:
    from datashunt import Budget, Shunt, calibrate
    from datashunt.data import Dataset, Example

    d = Path(shutil.copytree(tiny_bert, tmp_path / "gate"))
    dev = Dataset(
        tuple(
            Example(f"good great {i}" if i % 2 else f"bad {i}", LABELS[i % 2]) for i in range(60)
        ),
        LABELS,
    )
    policy = calibrate(HFGate(d), dev, Budget(0.5)).policy
    assert policy.gate_digest == HFGate(d).weights_digest
    policy.save(d)
    Shunt.from_dir(d)  # the gate it was fitted on: served
    # labels swapped consistently in config.json and in the policy: refused
    config = json.loads((d / "config.json").read_text())
    config["id2label"] = {"0": "positive", "1": "negative"}
    config["label2id"] = {"positive": 0, "negative": 1}
    (d / "config.json").write_text(json.dumps(config))
    saved = json.loads((d / "datashunt_policy.json").read_text())
    saved["labels"] = ["positive", "negative"]
    saved["class_recall"] = {}
    (d / "datashunt_policy.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="calibrated for gate weights"):
        Shunt.from_dir(d)


def test_an_unpinned_policy_keeps_its_json_and_version() -> None:
    policy = ShuntPolicy(LABELS, threshold=0.8)
    assert "gate_digest" not in policy.to_dict()
    pinned = policy.with_(gate_digest="0123456789abcdef")
    assert ShuntPolicy.from_dict(pinned.to_dict()) == pinned
    assert pinned.version != policy.version
    with pytest.raises(ConfigError, match="gate_digest"):
        ShuntPolicy(LABELS, gate_digest=12)  # type: ignore[arg-type]


def test_bf16_gate_answers_close_to_fp32(tiny_bert: Path) -> None:
    texts = ["good product", "awful", "it is fine i guess", "good " * 30]
    fp32 = HFGate(tiny_bert).predict_proba(texts)
    bf16 = HFGate(tiny_bert, quantize="bf16")
    assert next(bf16.model.parameters()).dtype.is_floating_point
    assert str(next(bf16.model.parameters()).dtype) == "torch.bfloat16"
    np.testing.assert_allclose(bf16.predict_proba(texts), fp32, atol=0.02)
    with pytest.raises(ConfigError, match="fp16.*needs a GPU"):
        HFGate(tiny_bert, quantize="fp16")


def test_one_input_takes_the_same_answer_as_a_batch(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert)
    texts = ["good product", "it is fine i guess, bad smell, awful", "a"]
    batch = gate.predict_proba(texts)
    one = np.vstack([gate.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(one, batch, atol=1e-5)
    enc = gate.encode(["good"])
    assert int(enc["attention_mask"].sum()) == enc["attention_mask"].shape[1]  # no padding
