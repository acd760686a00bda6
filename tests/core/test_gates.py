from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datashunt import ConfigError, HFGate, InputError, ModelNotFoundError, ShuntPolicy, load_gate
from datashunt.gates import softmax


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
