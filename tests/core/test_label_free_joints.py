"""The joints a new user's run hit (issue 25, Build item 2): a store export trains a gate
(unparsed answers skipped and counted, a seeded dev part held out), the export keeps the chain's
``{text}`` input, and ``distill`` / ``loop`` take an embedding gate and records older than it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from datashunt import (
    Budget,
    CallRecord,
    CallStore,
    ConfigError,
    Dataset,
    DistillConfig,
    EmbeddingGate,
    ShuntPolicy,
    load_gate,
    read_dataset,
)
from datashunt.cli import main
from datashunt.gates import softmax
from datashunt.loop import ALL_RECORDS, LoopConfig, run_round
from datashunt.registry import GateRegistry
from datashunt.training.distillation.distill_config import check_gate_dir
from datashunt.training.distillation.distill_head import HeadDistiller, open_distiller
from datashunt.training.guarantees.targets import PrecisionFloor
from tests.conftest import WORDS
from tests.core.test_distill import LABELS, NEW, OLD, llm_record, make

KEYS = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}
FILLER = ["the", "a", "it", "is", "was", "this", "product", "book", "movie", "very"]
PROMPT = "system: You classify reviews.\nuser: Review: {}\nAnswer positive or negative."


def reviews(seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` distinct texts, each with one keyword that decides its label."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    while len(out) < n:
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(2, 5)))]
        kw = str(rng.choice(sorted(KEYS)))
        words.insert(int(rng.integers(0, len(words) + 1)), kw)
        out.setdefault(" ".join(words), KEYS[kw])
    return list(out.items())


def chain_record(text: str, label: str | None, **kw: object) -> CallRecord:
    """An LLM call as the callback handler records a plain chain's: the ``{text}`` variable as
    ``input_text``, the templated prompt beside it; ``label=None`` is an unreadable answer."""
    body = PROMPT.format(text).split("\n", 1)[1].removeprefix("user: ")
    return CallRecord(
        route="llm",
        input_text=text,
        prompt=PROMPT.format(text),
        messages=[
            {"role": "system", "content": "You classify reviews."},
            {"role": "user", "content": body},
        ],
        response=label or "hard to say, maybe positive or negative",
        parsed_label=label,
        parse_ok=label is not None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int]:
    """A store export of 40 chain calls: 30 parsed, 6 unparsed, 2 failed, 2 gate-answered;
    returns the file and the number of parsed answers."""
    rows = reviews(0, 40)
    recs = [chain_record(t, lab) for t, lab in rows[:30]]
    recs += [chain_record(t, None) for t, _ in rows[30:36]]
    recs += [chain_record(t, None, error="LLMError: timeout") for t, _ in rows[36:38]]
    recs += [CallRecord(route="small", input_text=t, gate_label=lab) for t, lab in rows[38:]]
    CallStore(tmp_path / "calls.sqlite").add_many(recs)
    out = tmp_path / "export.jsonl"
    argv = ["store", "export", "--store", str(tmp_path / "calls.sqlite"), "--out", str(out)]
    assert main(argv) == 0
    assert "wrote 40 records" in capsys.readouterr().out
    return out, 30


def test_store_export_writes_the_chain_input_beside_the_prompt(
    exported: tuple[Path, int],
) -> None:
    path, _ = exported
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = {t for t, _ in reviews(0, 40)}
    assert {r["input_text"] for r in rows} == texts  # the {text} variable, not the prompt
    llm = [r for r in rows if r["route"] == "llm"]
    assert all(r["prompt"] == PROMPT.format(r["input_text"]) for r in llm)
    assert sum(r["parse_ok"] is True for r in llm) == 30  # what train-gate may learn from


def test_reading_an_export_skips_the_rows_without_an_llm_label(
    exported: tuple[Path, int],
) -> None:
    data = read_dataset(exported[0], text_col="input_text", label_col="parsed_label")
    assert dict(zip(data.texts, (e.label for e in data.examples), strict=True)) == dict(
        reviews(0, 40)[:30]
    )
    assert data.skipped == 10  # 6 unparsed, 2 failed calls, 2 answered by the gate


def test_reading_an_export_never_takes_an_unparsed_answer_as_a_label(tmp_path: Path) -> None:
    rows = [
        {"route": "llm", "input_text": "good", "parsed_label": "positive", "parse_ok": True},
        # whatever the label cell holds, parse_ok false means the answer was not readable
        {"route": "llm", "input_text": "bad", "parsed_label": "positive", "parse_ok": False},
        {"route": "llm", "input_text": "awful", "parsed_label": None, "parse_ok": None},
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_dataset(path, text_col="input_text", label_col="parsed_label")
    assert data.texts == ["good"] and data.skipped == 2
    plain = tmp_path / "gold.csv"  # gold data with a hole stays an error unless asked
    plain.write_text("text,label\ngood,positive\nbad,\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"row 2 has an empty label.*--skip-empty-labels"):
        read_dataset(plain)
    assert read_dataset(plain, skip_empty=True).skipped == 1


def test_train_gate_on_a_store_export_skips_unparsed_rows_and_holds_out_dev(
    exported: tuple[Path, int], tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, parsed = exported
    # an export's columns are known: input_text is the text, parsed_label the label
    argv = ["train-gate", "--data", str(path), "--kind", "embedding", "--backbone", str(tiny_bert)]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 0
    out, err = capsys.readouterr()
    assert "skipped 10 of 40 rows without a label" in err
    assert "held out 3 of 30 examples (10%, seed 0) as dev" in out
    rep = json.loads((tmp_path / "g" / "datashunt_train.json").read_text())["report"]
    assert (rep["n_train"], rep["n_dev"]) == (27, 3) and rep["dev_accuracy"] is not None
    # the share and the draw are the user's: another seed holds out other examples
    assert main([*argv, "--out", str(tmp_path / "h"), "--dev-share", "0.2", "--seed", "1"]) == 0
    assert "held out 6 of 30 examples (20%, seed 1)" in capsys.readouterr().out
    data = read_dataset(path, text_col="input_text", label_col="parsed_label")
    a, b = data.holdout(0.2, 0)[1], data.holdout(0.2, 1)[1]
    assert a == data.holdout(0.2, 0)[1] and set(a.texts) != set(b.texts)
    assert len(a) + len(data.holdout(0.2, 0)[0]) == parsed


# ---- distill and loop take an embedding gate ------------------------------------------------


def bag_of_words(self: EmbeddingGate, texts: Sequence[str]) -> np.ndarray:
    """A stand-in encoder (normalised word counts): a random tiny BERT's mean-pooled vectors
    do not tell the keywords apart, and the head is what these tests are about."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    x = np.zeros((len(texts), len(WORDS)))
    for r, text in enumerate(texts):
        for w in text.split():
            x[r, vocab[w]] += 1
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


@dataclass
class EmbWorld:
    gate: Path
    store: Path
    dev: Dataset
    confident: list[str]
    shifted: Dataset


@pytest.fixture
def emb_world(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmbWorld:
    """An embedding gate sure of the old keywords (good/bad ...), unsure of the new ones
    (love/hate ...), and a store: the old inputs it answered, the LLM's answers on new ones."""
    monkeypatch.setattr(EmbeddingGate, "embed", bag_of_words)
    old, neutral = make(0, 48, OLD), make(1, 24, None).texts
    gate = EmbeddingGate.fit(
        old.texts + neutral * 2, old.y + [0] * 24 + [1] * 24, labels=LABELS, backbone=tiny_bert
    )
    path = gate.save(tmp_path / "emb-gate")
    ShuntPolicy(LABELS, threshold=0.75, target=Budget(0.5).describe()).save(path)
    confident, new = make(10, 30, OLD).texts, make(11, 40, NEW)
    assert gate.predict_proba(confident).max(axis=1).min() >= 0.75  # stage-2 material
    assert gate.predict_proba(new.texts).max(axis=1).max() < 0.75  # stage-1 material
    recs = [CallRecord(route="small", input_text=t) for t in confident]
    recs += [llm_record(e.text, e.label, 0.95) for e in new.examples[:30]]
    recs += [llm_record(e.text, e.label, None) for e in new.examples[30:]]  # no logprobs
    CallStore(tmp_path / "calls.sqlite").add_many(recs)
    return EmbWorld(
        path, tmp_path / "calls.sqlite", make(12, 24, OLD), confident, make(13, 24, NEW)
    )


def agreement(gate_dir: Path, data: Dataset) -> float:
    pred = load_gate(gate_dir).predict_proba(data.texts).argmax(axis=1)
    return float((pred == np.array(data.y)).mean())


def test_distill_refits_an_embedding_gates_head_and_keeps_what_it_was_sure_of(
    emb_world: EmbWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = emb_world
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\n" + "".join(f"{e.text},{e.label}\n" for e in w.dev.examples))
    out = tmp_path / "emb-2cd"
    argv = ["distill", "--store", str(w.store), "--gate", str(w.gate), "--out", str(out)]
    argv += ["--dev-data", str(dev), "--trust-unscored", "--target", "budget:0.5", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "stage 1: 40 inputs" in printed and "the head was refit by L-BFGS" in printed
    gate = load_gate(out)
    assert isinstance(gate, EmbeddingGate) and gate.labels == LABELS
    assert ShuntPolicy.load(out).metrics["llm_rate"] <= 0.5
    assert agreement(w.gate, w.shifted) < 0.7 and agreement(out, w.shifted) >= 0.95
    assert agreement(out, w.dev) >= 0.95  # the old inputs are still right
    # 2CD's stage 2 anchors the new head to the frozen one where that one was sure
    d = open_distiller(w.gate, w.store, dev=w.dev, progress=False)
    assert isinstance(d, HeadDistiller) and d.store_counts.llm_answers == 40
    cfg = DistillConfig(trust_unscored=True)
    both = d.run(tmp_path / "2cd", cfg)
    only1 = d.run(tmp_path / "stage1", replace(cfg, method="stage1"))
    assert both.selection.stage2_logged == 30 and only1.selection.stage2_logged == 0
    assert [s.stage for s in both.losses] == ["stage1-llm", "stage2-keep"]
    z_s1 = load_gate(w.gate).predict_logits(w.confident)

    def kl_from_s1(gate_dir: Path) -> float:
        p, q = softmax(z_s1), softmax(load_gate(gate_dir).predict_logits(w.confident))
        return float((p * np.log(p / q)).sum(axis=1).mean())

    assert kl_from_s1(tmp_path / "2cd") < 0.5 * kl_from_s1(tmp_path / "stage1")
    assert both.slice("logged LLM answers").accuracy_after == 1.0


def test_loop_rounds_on_an_embedding_champion(emb_world: EmbWorld, tmp_path: Path) -> None:
    w = emb_world
    reg = GateRegistry(tmp_path / "reg")
    reg.promote(reg.add(w.gate, note="embedding gate").version)
    calib = Dataset(w.dev.examples + make(14, 24, NEW).examples, LABELS)
    config = LoopConfig(target=PrecisionFloor(0.9), confidence=None, min_answers=10)
    rep = run_round(
        reg,
        w.store,
        calib=calib,
        slices={"old": w.dev, "new": w.shifted},
        config=config,
        out_root=tmp_path / "rounds",
        progress=False,
        since=ALL_RECORDS,
    )
    assert rep.promoted == "v0002", rep.to_markdown()
    assert rep.after.llm_rate < rep.before.llm_rate
    assert rep.after.slice("new").accuracy > rep.before.slice("new").accuracy
    assert isinstance(load_gate(reg.path("v0002")), EmbeddingGate)


def test_gates_distill_cannot_take_are_refused_saying_why(tmp_path: Path) -> None:
    image = tmp_path / "image-gate"
    image.mkdir()
    (image / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"]}))
    with pytest.raises(ConfigError, match="image gate; the store keeps an image's hash"):
        check_gate_dir(image)
