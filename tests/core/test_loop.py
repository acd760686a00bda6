"""The closed loop: the promotion rule, the evidence, one round end to end (tiny BERT), the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from datashunt import CallRecord, CallStore, DataError, Dataset, ShuntPolicy
from datashunt.cli import main as cli_main
from datashunt.gates import softmax
from datashunt.loop import (
    EvidenceSlice,
    GateEvidence,
    LoopConfig,
    SliceResult,
    evaluate_gate,
    judge,
    run_round,
)
from datashunt.registry import GateRegistry
from datashunt.training.guarantees.targets import Budget, PrecisionFloor
from tests.core.test_distill import CFG, LABELS, NEW, OLD, llm_record, make, train_specific_gate

torch = pytest.importorskip("torch")


def evidence(rate: float, **acc: float) -> GateEvidence:
    slices = tuple(SliceResult(k, 100, v, rate, None, "gold") for k, v in acc.items())
    return GateEvidence("g", 0.9, 1.0, rate, 0.95, 0.9, True, "", slices)


def test_judge_promotes_only_a_cheaper_gate_that_loses_no_slice() -> None:
    champ = evidence(0.60, old=0.90, new=0.70)
    ok = judge(champ, evidence(0.40, old=0.897, new=0.80))
    assert ok.promote and not ok.refused
    assert "60.0% -> 40.0% (-33.3% relative)" in ok.findings[0]
    lost = judge(champ, evidence(0.40, old=0.893, new=0.85))
    assert not lost.promote
    assert lost.refused == (
        "old (100, vs gold): accuracy 90.0% -> 89.3% (-0.7 points): loses more than 0.5 points",
    )
    dearer = judge(champ, evidence(0.61, old=0.95, new=0.95))
    assert not dearer.promote and "not lower" in dearer.refused[0]
    assert not judge(champ, evidence(0.50, old=0.9, new=0.7), min_gain=0.2).promote
    assert judge(champ, evidence(0.47, old=0.9, new=0.7), min_gain=0.2).promote
    unsure = replace(evidence(0.1, old=0.9, new=0.7), certified=False, note="too few")
    assert "cannot certify" in judge(champ, unsure).refused[0]
    few = replace(champ, slices=(SliceResult("audits", 12, 1.0, 0.0, None, "llm"),))
    small = replace(evidence(0.5), slices=(SliceResult("audits", 12, 0.5, 0.0, None, "llm"),))
    assert judge(few, small).promote  # 12 audits do not decide


def test_evaluate_gate_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    texts = [f"t{i}" for i in range(400)]
    y = rng.integers(0, 2, 400)
    logits = rng.normal(size=(400, 2)) + 2.0 * np.eye(2)[y] * rng.random((400, 1))
    table = dict(zip(texts, logits, strict=True))
    from datashunt import Example

    data = Dataset(tuple(Example(t, LABELS[k]) for t, k in zip(texts, y, strict=True)), LABELS)
    calib, test = Dataset(data.examples[:200], LABELS), Dataset(data.examples[200:], LABELS)
    ev, policy = evaluate_gate(
        "g",
        LABELS,
        lambda ts: np.stack([table[t] for t in ts]),
        calib,
        [EvidenceSlice.of("test", test)],
        Budget(0.3),
        None,
    )
    probs = softmax(logits[200:], policy.temperature)
    small = probs.max(axis=1) >= policy.threshold
    right = probs.argmax(axis=1) == y[200:]
    got = ev.slice("test")
    assert got.accuracy == pytest.approx(right.mean())
    assert got.llm_rate == pytest.approx((~small).mean())
    assert got.small_precision == pytest.approx(right[small].mean())
    cal_small = softmax(logits[:200], policy.temperature).max(axis=1) >= policy.threshold
    assert ev.llm_rate == pytest.approx((~cal_small).mean()) and ev.llm_rate <= 0.3


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = train_specific_gate(tmp_path_factory.mktemp("loop") / "gate")
    ShuntPolicy(LABELS, threshold=0.9).save(path)
    return path


def mixed(seed: int, n: int) -> Dataset:
    a, b = make(seed, n, OLD), make(seed + 100, n, NEW)
    return Dataset(a.examples + b.examples, LABELS)


def test_a_round_promotes_a_better_gate_then_reads_only_newer_records(
    gate: Path, tmp_path: Path
) -> None:
    reg = GateRegistry(tmp_path / "reg")
    reg.promote(reg.add(gate, note="base").version)
    store = tmp_path / "calls.sqlite"
    new = make(11, 40, NEW)
    recs = [CallRecord(route="small", input_text=t) for t in make(10, 30, OLD).texts]
    recs += [llm_record(e.text, e.label, None) for e in new.examples]  # recorded: no C_l
    audited = make(15, 5, OLD).examples
    recs += [
        replace(llm_record(e.text, e.label, None, extra={"audit": True}), route="small")
        for e in audited
    ]  # as the shunt records an audit: the gate's route, the LLM's answer
    CallStore(store).add_many(recs)
    config = LoopConfig(
        target=PrecisionFloor(0.95),
        confidence=None,
        tolerance=0.05,
        min_answers=10,
        distill=replace(CFG, trust_unscored=True),
    )
    rep = run_round(
        reg,
        store,
        calib=mixed(20, 20),
        slices={"old": make(12, 40, OLD), "new": make(13, 40, NEW)},
        config=config,
        out_root=tmp_path / "rounds",
        progress=False,
    )
    assert rep.promoted == "v0002", rep.to_markdown()
    assert rep.after.llm_rate < rep.before.llm_rate
    assert rep.after.slice("new").accuracy > rep.before.slice("new").accuracy
    assert rep.before.slice("audits").n == 5 and rep.before.slice("audits").reference == "llm"
    assert rep.llm_answers == 40 and rep.stage1 > 0  # audits are not training data
    v = reg.get("v0002")
    assert reg.champion() == "v0002" and v.parent == "v0001"
    assert v.provenance["through"] == rep.through and v.provenance["method"] == "2cd"
    saved = json.loads((tmp_path / "rounds" / "round-001" / "report.json").read_text())
    assert saved["promoted"] == "v0002"
    assert "promoted v0002" in (tmp_path / "rounds" / "round-001" / "report.md").read_text()
    # the next round starts where this one's records ended: nothing new yet
    with pytest.raises(DataError, match="serve traffic with the store attached"):
        run_round(reg, store, calib=mixed(20, 20), config=config, out_root=tmp_path / "rounds")
    # a rollback returns the old gate; the champion's own window applies again
    reg.rollback(reason="test")
    assert reg.champion() == "v0001"


def test_a_round_that_cannot_beat_the_champion_keeps_it(gate: Path, tmp_path: Path) -> None:
    reg = GateRegistry(tmp_path / "reg")
    reg.promote(reg.add(gate).version)
    store = tmp_path / "calls.sqlite"
    # a teacher that is always wrong on the new inputs
    recs = [
        llm_record(e.text, LABELS[1 - LABELS.index(e.label)], None)
        for e in make(11, 40, NEW).examples
    ]
    CallStore(store).add_many(recs)
    config = LoopConfig(
        target=PrecisionFloor(0.8),
        confidence=None,
        min_answers=10,
        distill=replace(CFG, trust_unscored=True),
    )
    rep = run_round(
        reg,
        store,
        calib=mixed(20, 20),
        slices={"new": make(13, 40, NEW)},
        config=config,
        out_root=tmp_path / "rounds",
        progress=False,
    )
    assert rep.promoted is None and rep.verdict.refused
    assert reg.champion() == "v0001" and [v.version for v in reg.versions()] == ["v0001"]
    assert "kept v0001" in rep.to_markdown() and "Why the champion stays" in rep.to_markdown()
    with pytest.raises(DataError, match="only 40 usable LLM answers"):
        run_round(reg, store, calib=mixed(20, 20), config=replace(config, min_answers=41))


def test_gates_cli(gate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "reg")
    assert cli_main(["gates", "list", "--registry", reg]) == 0
    assert "no gate versions yet" in capsys.readouterr().out
    assert cli_main(["gates", "add", str(gate), "--registry", reg, "--promote"]) == 0
    assert cli_main(["gates", "add", str(gate), "--registry", reg, "--parent", "v0001"]) == 0
    assert cli_main(["gates", "promote", "v0002", "--registry", reg]) == 0
    assert "champion: v0002 (was v0001)" in capsys.readouterr().out
    assert cli_main(["gates", "list", "--registry", reg, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["champion"] == "v0002" and len(listed["versions"]) == 2
    assert cli_main(["gates", "rollback", "--registry", reg, "--reason", "bad"]) == 0
    assert "champion v0001 (was v0002)" in capsys.readouterr().out
    assert cli_main(["gates", "show", "--registry", reg]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v0001"
    assert cli_main(["gates", "rollback", "--registry", reg]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err
    assert cli_main(["gates", "add", str(tmp_path / "nope"), "--registry", reg]) == 2


def test_a_first_round_reads_records_made_before_the_champion_with_since(
    gate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime, timedelta, timezone

    from datashunt import ConfigError
    from datashunt.loop import ALL_RECORDS, parse_since

    store = tmp_path / "calls.sqlite"
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)  # noqa: UP017
    recs = [llm_record(e.text, e.label, None) for e in make(11, 40, NEW).examples]
    CallStore(store).add_many([replace(r, created_at=hour_ago) for r in recs])  # shadowed
    reg = GateRegistry(tmp_path / "reg")
    reg.promote(reg.add(gate, note="first gate, registered after its traffic").version)
    config = LoopConfig(
        target=PrecisionFloor(0.9),
        confidence=None,
        min_answers=10,
        distill=replace(CFG, trust_unscored=True, rounds=1),
    )
    with pytest.raises(DataError, match=r"no records in the store between.*--since all"):
        run_round(reg, store, calib=mixed(20, 20), config=config, out_root=tmp_path / "r")
    rep = run_round(
        reg,
        store,
        calib=mixed(20, 20),
        config=config,
        out_root=tmp_path / "r",
        progress=False,
        since=ALL_RECORDS,
    )
    assert rep.llm_answers == 40 and rep.records == 40 and rep.stage1 > 0
    assert parse_since("all") == ALL_RECORDS
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=timezone.utc)  # noqa: UP017
    with pytest.raises(ConfigError, match="--since takes 'all' or an ISO 8601 time"):
        parse_since("last week")
    argv = ["loop", "--store", str(store), "--registry", str(tmp_path / "reg")]
    argv += ["--calib-data", str(tmp_path / "calib.csv"), "--out", str(tmp_path / "r")]
    (tmp_path / "calib.csv").write_text(
        "text,label\n" + "".join(f"{e.text},{e.label}\n" for e in mixed(20, 20).examples)
    )
    assert cli_main([*argv, "--since", "yesterday"]) == 2
    assert "--since takes 'all'" in capsys.readouterr().err
    since = (hour_ago - timedelta(minutes=1)).isoformat()
    fast = ["--rounds", "1", "--epochs", "1", "--max-length", "32", "--min-answers", "10"]
    assert cli_main([*argv, *fast, "--since", since, "--no-progress", "--confidence", "0"]) == 0
    assert "(40 usable LLM answers)" in capsys.readouterr().out
