"""``datashunt bootstrap``: the first gate from the store's LLM answers, only when it certifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datashunt.cli import build_parser, main
from datashunt.cli.bootstrap import run_bootstrap
from datashunt.store import CallRecord, CallStore


def fill_store(path: Path, texts: list[str], answers: list[str | None]) -> None:
    store = CallStore(str(path))
    for t, a in zip(texts, answers, strict=True):
        store.add(
            CallRecord(
                route="llm",
                input_text=t,
                response=a or "I cannot tell",
                parsed_label=a,
                parse_ok=a is not None,
            )
        )
    store.close()


def args_for(tmp_path: Path, *extra: str):
    argv = ["bootstrap", "--store", str(tmp_path / "calls.sqlite"), "--labels", "neg,pos"]
    argv += ["--registry", str(tmp_path / "gates"), *extra]
    return build_parser().parse_args(argv)


def test_too_few_answers_keeps_shadowing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fill_store(tmp_path / "calls.sqlite", [f"t{i}" for i in range(12)], ["pos", None] * 6)
    argv = ["bootstrap", "--store", str(tmp_path / "calls.sqlite"), "--labels", "neg,pos"]
    assert main([*argv, "--registry", str(tmp_path / "gates")]) == 0
    out = capsys.readouterr().out
    assert "6 unparsed skipped" in out and "keep the shunt shadowing" in out
    assert not (tmp_path / "gates").exists()


def test_unreadable_answers_are_skipped_and_nothing_registers_uncertified(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    n = 160
    texts = [f"text {i}" for i in range(n)]
    y = rng.integers(0, 2, n)
    answers: list[str | None] = [("neg", "pos")[v] for v in y]
    for i in range(0, n, 10):
        answers[i] = None  # unreadable: must not become a label
    fill_store(tmp_path / "calls.sqlite", texts, answers)
    feats = {
        t: rng.normal(size=4) + (1.0 if v else -1.0) * 0.3 for t, v in zip(texts, y, strict=True)
    }
    seen: list[int] = []

    def embed(batch: list[str]) -> np.ndarray:
        seen.append(len(batch))
        return np.array([feats[t] for t in batch])

    lines: list[str] = []
    summary = run_bootstrap(args_for(tmp_path), embed=embed, out=lines.append)
    assert seen == [n - n // 10]  # only the readable answers were embedded and used
    assert summary["unparsed_skipped"] == n // 10
    assert summary["registered"] is None
    assert summary["more_answers"] is None or summary["more_answers"] > 0
    assert any("keeps shadowing" in line for line in lines)
    assert not (tmp_path / "gates").exists()


@pytest.mark.slow
def test_certified_gate_is_registered_and_serves(tmp_path: Path) -> None:
    from datashunt.registry import GateRegistry

    good = ["a wonderful, moving film", "I loved every minute", "brilliant and funny"]
    bad = ["a dull, boring mess", "I hated every minute", "awful and tedious"]
    rng = np.random.default_rng(0)
    texts, answers = [], []
    for i in range(400):
        pos = bool(rng.integers(0, 2))
        texts.append(f"{(good if pos else bad)[i % 3]} ({i})")
        answers.append("pos" if pos else "neg")
    fill_store(tmp_path / "calls.sqlite", texts, answers)
    summary = run_bootstrap(args_for(tmp_path, "--target", "0.9"), out=lambda s: None)
    assert summary["registered"] is not None
    with GateRegistry(tmp_path / "gates") as reg:
        assert reg.champion() == summary["registered"]
        gate, policy = reg.load()
    assert policy.guarantee is not None and policy.guarantee["level"] == 0.9
    assert policy.threshold == summary["threshold"] < 1.0
    probs = gate.predict_proba(["I loved every minute of it", "a boring, awful mess"])
    assert probs.argmax(axis=1).tolist() == [1, 0]


@pytest.mark.slow
def test_tuned_student_gate_is_registered_and_serves(tmp_path: Path) -> None:
    from datashunt.gates.embedding import EmbeddingGate
    from datashunt.registry import GateRegistry

    good = ["a wonderful, moving film", "I loved every minute", "brilliant and funny"]
    bad = ["a dull, boring mess", "I hated every minute", "awful and tedious"]
    texts, answers = [], []
    for i in range(200):
        pos = i % 2 == 0
        texts.append(f"{(good if pos else bad)[i % 3]} ({i})")
        answers.append("pos" if pos else "neg")
    fill_store(tmp_path / "calls.sqlite", texts, answers)
    args = args_for(tmp_path, "--target", "0.9", "--student", "tuned", "--tuned-layers", "1")
    summary = run_bootstrap(args, out=lambda s: None)
    assert summary["registered"] is not None
    with GateRegistry(tmp_path / "gates") as reg:
        gate, policy = reg.load()
    assert isinstance(gate, EmbeddingGate) and gate.backbone == "encoder"  # saved inside
    assert policy.threshold == summary["threshold"] < 1.0
    probs = gate.predict_proba(["I loved every minute of it", "a boring, awful mess"])
    assert probs.argmax(axis=1).tolist() == [1, 0]
