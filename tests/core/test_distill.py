"""2CD end to end on a tiny random BERT and a SQLite store filled here (no network, no LLM)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from datashunt import (
    Budget,
    CallRecord,
    CallStore,
    ConfigError,
    DataError,
    Dataset,
    DistillConfig,
    Distiller,
    Example,
    HFGate,
    Shunt,
    ShuntPolicy,
    load_gate,
)
from datashunt.cli import main as cli_main
from datashunt.cli.distill import main
from datashunt.gates import softmax
from datashunt.training import target_from_policy
from tests.conftest import build_tiny_bert

torch = pytest.importorskip("torch")

LABELS = ("negative", "positive")
FILLER = ["the", "a", "it", "is", "was", "this", "product", "book", "movie", "very", "and", "i"]
OLD = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}
NEW = {"love": "positive", "wonderful": "positive", "hate": "negative", "terrible": "negative"}
CFG = DistillConfig(lr=3e-3, rounds=3, epochs=4, batch_size=8, max_length=32, seed=0)


def make(seed: int, n: int, keywords: dict[str, str] | None) -> Dataset:
    """Filler words around one keyword that decides the label (no keyword: a random label)."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    while len(out) < n:
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(2, 6)))]
        label = LABELS[int(rng.integers(0, 2))]
        if keywords:
            kw = str(rng.choice(sorted(keywords)))
            words.insert(int(rng.integers(0, len(words) + 1)), kw)
            label = keywords[kw]
        out.setdefault(" ".join(words), label)
    return Dataset(tuple(Example(t, lab) for t, lab in out.items()), LABELS)


def train_specific_gate(path: Path) -> Path:
    """F_s1: sure on the old keywords, unsure without one (filler is seen with both labels)."""
    from transformers import BertForSequenceClassification, BertTokenizerFast

    build_tiny_bert(path, LABELS)
    # transformers 5 reads the vocabulary from `vocab=`; without it every word would be [UNK].
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(path)
    neutral = make(1, 24, None).texts
    data = [(e.text, LABELS.index(e.label)) for e in make(0, 48, OLD).examples]
    data += [(t, 0) for t in neutral] + [(t, 1) for t in neutral]
    enc = tok([t for t, _ in data], padding=True, return_tensors="pt")
    y = torch.tensor([label for _, label in data])
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(path)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        idx = torch.randperm(len(data))[:16]
        batch = {k: v[idx] for k, v in enc.items()}
        model(**batch, labels=y[idx]).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    return path


def llm_record(text: str, label: str | None, conf: float | None, **kw: object) -> CallRecord:
    other = LABELS[1 - LABELS.index(label)] if label else None
    probs = {label: conf, other: 1 - conf} if label and other and conf is not None else None
    return CallRecord(
        route="llm",
        input_text=text,
        parsed_label=label,
        parse_ok=label is not None,
        llm_confidence=conf,
        llm_probs=probs,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class World:
    gate: Path
    store: Path
    dev: Dataset
    confident: list[str]
    unsure: list[str]
    shifted: Dataset


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models on a shared 2-core machine: a second OpenMP thread only spins (100x slower).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("distill")
    gate = train_specific_gate(root / "gate")
    ShuntPolicy(LABELS, threshold=0.9, target=Budget(0.5).describe()).save(gate)
    old, new = make(10, 30, OLD), make(11, 28, NEW)
    f_s1 = HFGate(gate)
    assert f_s1.predict_proba(old.texts).max(axis=1).min() >= 0.9  # stage 2 material
    assert f_s1.predict_proba(new.texts).max(axis=1).max() < 0.9  # stage 1 material
    recs = [CallRecord(route="small", input_text=t) for t in old.texts]
    ex = new.examples
    recs += [llm_record(e.text, e.label, 0.95) for e in ex[:20]]
    recs += [llm_record(e.text, e.label, 0.6) for e in ex[20:23]]
    recs += [llm_record(e.text, None, None, error="LLMError: timeout") for e in ex[23:25]]
    recs += [llm_record(e.text, None, None, response="no idea") for e in ex[25:27]]
    recs += [llm_record(ex[27].text, ex[27].label, None)]
    store = root / "calls.sqlite"
    CallStore(store).add_many(recs)
    return World(gate, store, make(12, 24, OLD), old.texts, new.texts, make(13, 24, NEW))


@pytest.fixture(scope="module")
def distiller(world: World) -> Distiller:
    return Distiller(world.gate, world.store, dev=world.dev, progress=False)


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    p, q = softmax(p_logits), softmax(q_logits)
    return float((p * (np.log(p) - np.log(q))).sum(axis=1).mean())


def accuracy(gate_dir: Path, data: Dataset) -> float:
    pred = HFGate(gate_dir).predict_proba(data.texts).argmax(axis=1)
    return float((pred == np.array(data.y)).mean())


def test_stage2_keeps_the_learnable_gate_close_on_confident_inputs(
    world: World, distiller: Distiller, tmp_path: Path
) -> None:
    both = distiller.run(tmp_path / "2cd", CFG)
    only1 = distiller.run(tmp_path / "stage1", replace(CFG, method="stage1"))
    z_s1 = HFGate(world.gate).predict_logits(world.confident)
    kl_2cd = kl(z_s1, HFGate(tmp_path / "2cd").predict_logits(world.confident))
    kl_stage1 = kl(z_s1, HFGate(tmp_path / "stage1").predict_logits(world.confident))
    assert kl_2cd < 0.5 * kl_stage1
    # Both learn the LLM's answers, and carry them over to new inputs of the shifted kind.
    for report in (both, only1):
        agreement = report.slice("logged LLM answers")
        assert agreement.reference == "llm" and agreement.n == 24
        assert agreement.accuracy_after > agreement.accuracy_before + 0.2
    assert accuracy(tmp_path / "2cd", world.shifted) > accuracy(world.gate, world.shifted) + 0.1
    assert both.slice("dev").accuracy_after >= 0.9  # the old inputs are still right
    sel = both.selection
    assert (sel.stage1, sel.low_llm_confidence, sel.unscored_skipped) == (20, 3, 1)
    assert sel.stage2_logged == len(world.confident) and sel.threshold == 0.9
    assert only1.selection.stage2_logged == 0
    assert [loss.stage for loss in both.losses] == ["stage1-llm", "stage2-keep"] * 3
    assert {loss.stage for loss in only1.losses} == {"stage1-llm"}


def test_store_problems_are_skipped_and_counted(world: World, distiller: Distiller) -> None:
    counts = distiller.store_counts
    assert (counts.llm_errors, counts.unparsed, counts.no_llm_confidence) == (2, 2, 1)
    assert counts.records == len(world.confident) + 28 and counts.llm_answers == 24


def test_output_is_a_gate_with_a_recalibrated_policy(
    world: World, distiller: Distiller, tmp_path: Path
) -> None:
    out = tmp_path / "gate-ft"
    report = distiller.run(out, replace(CFG, method="finetune", rounds=1))
    gate = load_gate(out)
    assert isinstance(gate, HFGate) and gate.labels == LABELS
    policy = ShuntPolicy.load(out)
    assert policy.threshold == report.threshold_after
    assert policy.temperature == pytest.approx(gate.temperature)
    # the old policy held the target as prose; the new one holds it as data, exactly
    assert policy.target == Budget(0.5).to_json() == report.target
    assert target_from_policy(policy) == Budget(0.5)
    assert policy.metrics["llm_rate"] == pytest.approx(report.slice("dev").llm_rate_after)
    assert len(Shunt.from_dir(out).decide(world.unsure[:3])) == 3
    train = json.loads((out / "datashunt_train.json").read_text())
    assert train["report"]["kind"] == "distill-finetune" and train["report"]["n_train"] == 20
    saved = json.loads((out / "datashunt_distill.json").read_text())
    assert saved["method"] == "finetune" and saved["selection"]["stage1"] == 20
    assert "stage 1: 20 inputs" in report.format()


def test_same_seed_same_weights(distiller: Distiller, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfg = replace(CFG, rounds=1, epochs=1)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        distiller.run(tmp_path / name, replace(cfg, seed=seed))
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_answers_without_logprobs_need_the_trust_option(world: World, tmp_path: Path) -> None:
    store = CallStore(tmp_path / "plain.sqlite")
    store.add_many([llm_record(e.text, e.label, None) for e in world.shifted.examples[:10]])
    d = Distiller(world.gate, store, dev=world.dev, progress=False)
    assert d.store_counts.no_llm_confidence == 10
    with pytest.raises(DataError, match="10 without C_l.*--trust-unscored"):
        d.run(tmp_path / "x", CFG)
    report = d.run(tmp_path / "y", replace(CFG, trust_unscored=True, rounds=1, epochs=1))
    assert report.selection.stage1 == 10 and report.selection.unscored_skipped == 0


def test_cli_runs_end_to_end(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dev, ev = tmp_path / "dev.csv", tmp_path / "eval.csv"
    dev.write_text("text,label\n" + "".join(f"{e.text},{e.label}\n" for e in world.dev.examples))
    rows = [f"{e.text},{e.label},{'ab'[i % 2]}\n" for i, e in enumerate(world.shifted.examples)]
    ev.write_text("text,label,group\n" + "".join(rows))
    out = tmp_path / "gate-cli"
    argv = [
        "distill",
        *("--store", str(world.store), "--gate", str(world.gate), "--out", str(out)),
        *("--dev-data", str(dev), "--train-data", str(dev), "--eval-data", str(ev)),
        *("--group-col", "group", "--max-length", "32", "--lr", "3e-3", "--batch-size", "8"),
        *("--rounds", "1", "--target", "budget:0.4", "--no-progress"),
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "stage 1: 20 inputs" in printed and "eval/a" in printed and "eval/b" in printed
    assert "budget: LLM-call rate <= 40%" in printed
    assert load_gate(out).labels == LABELS
    assert ShuntPolicy.load(out).metrics["llm_rate"] <= 0.4


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--store", "missing.sqlite", "no call store at"),
        ("--llm-min-confidence", "0.99", "no logged input qualifies for stage 1"),
        ("--out", "GATE", "out_dir must differ from the gate directory"),
        ("--dev-data", "neutral.csv", "labels ['neutral'] that the gate does not know"),
    ],
)
def test_cli_errors_say_what_to_do(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    (tmp_path / "dev.csv").write_text("text,label\ngood,positive\nbad,negative\n")
    (tmp_path / "neutral.csv").write_text("text,label\ngood,positive\nit is,neutral\n")
    opts = {
        "--store": str(world.store),
        "--gate": str(world.gate),
        "--out": str(tmp_path / "out"),
        "--dev-data": str(tmp_path / "dev.csv"),
        option: str(world.gate) if value == "GATE" else str(tmp_path / value),
    }
    if option == "--llm-min-confidence":
        opts[option] = value
    assert main([x for kv in opts.items() for x in kv] + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_store_labels_must_match_the_gate(world: World, tmp_path: Path) -> None:
    store = CallStore(tmp_path / "other.sqlite")
    store.add(llm_record("it is", "negative", 0.9))
    store.add(CallRecord(route="small", input_text="the", gate_probs={"sports": 1.0}))
    with pytest.raises(DataError, match=r"\['sports'\].*same label set"):
        Distiller(world.gate, store, dev=world.dev, progress=False)


def test_needs_a_threshold_without_a_policy(world: World, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(world.gate, bare)
    (bare / "datashunt_policy.json").unlink()
    d = Distiller(bare, world.store, dev=world.dev, progress=False)
    with pytest.raises(ConfigError, match="pass --threshold"):
        d.run(tmp_path / "o", CFG)
    with pytest.raises(ConfigError, match="--target"):
        d.run(tmp_path / "o", replace(CFG, threshold=0.9))
