"""Recorded LLM answers as the LLM: the column replay, the recorded benchmark, the cascade,
the ranking helpers and ``datashunt bench --data FILE --llm-column COL`` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from datashunt import LLMError, Shunt, ShuntPolicy
from datashunt.benchmark.recorded import (
    NOT_REPLAYABLE,
    RecordedConfig,
    bench_recorded,
    cascade_outcome,
)
from datashunt.cli import main
from datashunt.data import Dataset, Example, read_text_column
from datashunt.errors import DataError
from datashunt.llm import ColumnReplayLLM
from datashunt.llm.replay import NO_RECORDED_ANSWER
from datashunt.training.guarantees.ranking import (
    auroc,
    budget_threshold,
    choose_score,
    max_accuracy_threshold,
    routed_accuracy,
)
from tests.conftest import KeywordGate

# ---- the column replay through the engine ---------------------------------------------------


def _shunt(answers: dict[str, str]) -> Shunt:
    gate = KeywordGate()
    policy = ShuntPolicy(labels=gate.labels, threshold=1.0)  # everything to the LLM
    return Shunt(gate, policy, prompt_mode="none", llm=ColumnReplayLLM(answers, model="rec"))


def test_column_replay_answers_with_the_recorded_label_through_the_engine() -> None:
    shunt = _shunt({"good movie": "negative", "bad movie": ""})
    [res] = shunt.run_batch(["good movie"])
    assert res.label == "negative" and res.source == "llm"  # type: ignore[union-attr]


def test_empty_cell_is_an_unreadable_answer_and_the_shunt_falls_back() -> None:
    shunt = _shunt({"good movie": "negative", "bad movie": ""})
    [res] = shunt.run_batch(["bad movie"])
    # the gate says negative ("bad"); the LLM gave no label: the gate's label stands in
    assert res.source == "fallback" and res.label == "negative"  # type: ignore[union-attr]
    assert res.reply is not None and res.reply.text == NO_RECORDED_ANSWER  # type: ignore[union-attr]


def test_input_without_a_recorded_row_is_an_error_not_a_guess() -> None:
    llm = ColumnReplayLLM({"a": "positive"}, model="rec")
    shunt = Shunt(
        KeywordGate(),
        ShuntPolicy(labels=("negative", "positive"), threshold=1.0),
        prompt_mode="none",
        llm=llm,
        on_llm_error="raise",
    )
    with pytest.raises(LLMError, match="no recorded answer"):
        shunt.run_batch(["never recorded"])
    assert llm.misses == 1


def test_read_text_column_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label,ans\nhello,positive,positive\nbye,negative,\n", encoding="utf-8")
    assert read_text_column(path, "ans") == {"hello": "positive", "bye": ""}
    with pytest.raises(DataError, match="no column 'nope'"):
        read_text_column(path, "nope")
    llm = ColumnReplayLLM.from_data(path, "ans")
    assert llm.model == "recorded:d.csv:ans" and llm.recorded("bye") == ""


# ---- ranking helpers, checked by hand ---------------------------------------------------------


def test_auroc_by_hand() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4
    assert auroc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts a half


def test_budget_and_max_accuracy_thresholds_by_hand() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    d = budget_threshold(score, 0.3)
    assert d == pytest.approx(0.4) and (score < d).sum() == 3
    small = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    llm = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    # sending the two least confident fixes both gate errors; the third would break one
    delta, acc, rate = max_accuracy_threshold(score, small, llm)
    assert (delta, acc, rate) == (pytest.approx(0.3), pytest.approx(1.0), pytest.approx(0.2))
    assert routed_accuracy(score, small, llm, 0.4) == (pytest.approx(0.9), pytest.approx(0.3))
    best, table = choose_score({"good": score, "bad": -score}, small, llm, (0.2,))
    assert best == "good" and table["good"]["mean_accuracy"] == pytest.approx(1.0)


# ---- the cascade arithmetic, by hand -------------------------------------------------------


def test_cascade_outcome_by_hand() -> None:
    gate_score = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    agree = np.array([0.0, 0.0, 0.7, 0.2, 0.0])  # the gate's probability of A's label
    small = np.array([1, 0, 0, 0, 1], dtype=bool)
    a_ok = np.array([0, 1, 1, 0, 0], dtype=bool)
    b_ok = np.array([0, 0, 0, 1, 1], dtype=bool)
    correct, asked_a, asked_b = cascade_outcome(gate_score, agree, small, a_ok, b_ok, 0.5, 0.5)
    # inputs 0, 1 stay with the gate (right, wrong); 2 asks A, which agrees (0.7 >= 0.5): A's
    # answer (right); 3 and 4 ask A, A is unsure: B answers (right, right)
    assert asked_a.tolist() == [False, False, True, True, True]
    assert asked_b.tolist() == [False, False, False, True, True]
    assert correct.tolist() == [True, False, True, True, True]
    # cost with A at 0.9 and B at 1 per call: (0.9 * 3 + 1 * 2) / 5 = 0.94 of B alone
    assert (0.9 * asked_a.mean() + 1.0 * asked_b.mean()) == pytest.approx(0.94)


# ---- the recorded benchmark on a small hand-made set ---------------------------------------


def _data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    words = {"positive": ["good", "great"], "negative": ["bad", "awful"]}
    ex = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        # a third of the inputs carry no keyword: the gate is unsure there
        text = f"item {seed}-{i}" if i % 3 == 0 else f"{rng.choice(words[label])} item {seed}-{i}"
        ex.append(Example(text, label))
    return Dataset(tuple(ex), ("negative", "positive"))


def _answers(*datasets: Dataset) -> dict[str, str]:
    out = {}
    for d in datasets:
        for i, e in enumerate(d.examples):
            # the LLM is right except on every 7th input; every 11th has no recorded label
            out[e.text] = "" if i % 11 == 5 else (e.label if i % 7 else "positive")
    return out


def test_bench_recorded_figures_match_a_hand_count() -> None:
    dev, test = _data(60, 1), _data(40, 2)
    answers = _answers(dev, test)
    res = bench_recorded(
        "toy",
        KeywordGate(),
        {"ans": ColumnReplayLLM(answers, model="rec")},
        dev,
        test,
        config=RecordedConfig(budgets=(0.3,)),
        progress=False,
    )
    m = res["methods"]
    # the LLM alone: an empty cell is wrong
    right = sum(answers[e.text] == e.label for e in test.examples)
    assert m["llm"]["accuracy"] == pytest.approx(right / len(test))
    assert m["llm"]["unreadable"] == sum(answers[e.text] == "" for e in test.examples)
    # methods whose prompt differs are reported, never computed
    assert set(res["not_replayable"]) == set(NOT_REPLAYABLE)
    assert not any(k in m for k in NOT_REPLAYABLE)
    # the shunt at the dev-chosen δ, recounted by hand on test
    gate = KeywordGate()
    gate.temperature = res["temperature"]
    probs = gate.predict_proba(test.texts)
    score = probs.max(axis=1)
    d = m["ds-b30"]["delta"]
    correct = 0
    for e, p, s in zip(test.examples, probs, score, strict=True):
        gate_label = gate.labels[int(np.argmax(p))]
        if s < d:
            ans = answers[e.text]
            correct += (ans or gate_label) == e.label
        else:
            correct += gate_label == e.label
    assert m["ds-b30"]["accuracy"] == pytest.approx(correct / len(test))
    assert m["ds-b30"]["llm_rate"] == pytest.approx(float((score < d).mean()))
    assert m["ds-b30"]["dev_llm_rate"] <= 0.3
    assert m["oracle-b30"]["accuracy"] >= m["ds-b30"]["accuracy"]
    assert set(res["curve"]) >= {"llm_rate", "ds_none"}


def test_bench_recorded_cascade_with_two_columns() -> None:
    dev, test = _data(60, 3), _data(40, 4)
    a = {e.text: e.label for d in (dev, test) for e in d.examples}  # the cheap tier: always right
    b = {t: "positive" for t in a}
    res = bench_recorded(
        "toy",
        KeywordGate(),
        {"b": ColumnReplayLLM(b, model="b"), "a": ColumnReplayLLM(a, model="a")},
        dev,
        test,
        config=RecordedConfig(budgets=(0.5,), costs={"a": 0.5, "b": 1.0}, cascade_max_costs=(0.5,)),
        progress=False,
    )
    c = res["cascade"]["c50"]
    assert c["tiers"] == ["a", "b"]  # cheaper tier first
    assert c["cost_vs_dearest_alone"] <= 0.5
    assert c["accuracy"] >= res["methods"]["small"]["accuracy"]
    assert "agreement" in c["llm_confidence"]


# ---- the command line on an arbitrary CSV with a tiny gate ----------------------------------


def _csv(path: Path) -> Path:
    rows = []
    for split, n in (("train", 30), ("dev", 40), ("test", 30)):
        for e, ans in zip(_data(n, hash(split) % 97).examples, range(n), strict=True):
            answer = "" if ans % 9 == 4 else e.label
            rows.append(
                {"split": split, "text": f"{split} {e.text}", "label": e.label, "my_llm": answer}
            )
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["split", "text", "label", "my_llm"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_cli_bench_any_csv_with_a_gate(tmp_path: Path, tiny_bert: Path) -> None:
    data = _csv(tmp_path / "mine.csv")
    out = tmp_path / "rec.json"
    code = main(
        [
            "bench",
            "--data",
            str(data),
            "--text-col",
            "text",
            "--label-col",
            "label",
            "--split-col",
            "split",
            "--llm-column",
            "my_llm",
            "--gate",
            str(tiny_bert),
            "--out",
            str(out),
            "--no-plot",
            "--no-progress",
        ]
    )
    assert code == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    res = rep["datasets"]["mine.csv"]
    # the schema of latest.json
    for key in ("small", "llm", "ds-b20", "ds-b30", "ds-b40", "ds-b50", "ds-max"):
        assert {"accuracy", "llm_rate"} <= set(res["methods"][key])
    assert len(res["curve"]["llm_rate"]) == len(res["curve"]["ds_none"])
    assert res["n_test"] == 30 and res["replay_misses"] == {"my_llm": 0}
    # the LLM alone: 30 test answers, those with an empty cell count wrong
    assert res["methods"]["llm"]["unreadable"] == sum(1 for i in range(30) if i % 9 == 4)
    assert "not replayable" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_cli_bench_file_without_split_col_says_what_to_pass(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "mine.csv")
    code = main(
        [
            "bench",
            "--data",
            str(data),
            "--llm-column",
            "my_llm",
            "--gate",
            str(tiny_bert),
            "--out",
            str(tmp_path / "x.json"),
            "--no-plot",
        ]
    )
    assert code == 2
    assert "--split-col" in capsys.readouterr().err


def test_deferral_head_learns_where_the_llm_helps() -> None:
    from datashunt.training.guarantees.ranking import DeferralHead

    rng = np.random.default_rng(0)
    n = 400
    feature = rng.normal(size=(n, 1))
    probs = np.full((n, 2), 0.5)
    # the LLM is right and the gate wrong exactly where the feature is high
    helps = feature[:, 0] > 0.5
    small_ok, llm_ok = ~helps, np.ones(n, dtype=bool)
    head = DeferralHead().fit(feature, probs, small_ok, llm_ok)
    score = head.score(feature, probs)  # higher = keep with the gate
    assert auroc(score, ~helps) > 0.95


def test_calibrate_target_accuracy_from_a_recorded_column(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "mine.csv")
    code = main(
        [
            "calibrate",
            "--gate",
            str(tiny_bert),
            "--data",
            str(data),
            "--split-col",
            "split",
            "--target",
            "accuracy",
            "--llm-column",
            "my_llm",
            "--dry-run",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # 40 dev rows, an empty cell every 9th (i % 9 == 4: 4, 13, 22, 31): 36 right of 40
    assert "recorded LLM (my_llm) accuracy on 40 dev inputs: 0.9000" in out
    assert "4 without a recorded label" in out


def test_cli_bench_mixes_several_gates_on_dev(tmp_path: Path, tiny_bert: Path) -> None:
    # the same gate twice: no mixture can beat the first alone on dev, so it is kept
    data = _csv(tmp_path / "mine.csv")
    out = tmp_path / "rec.json"
    args = ["bench", "--data", str(data), "--split-col", "split", "--llm-column", "my_llm"]
    args += ["--gate", f"{tiny_bert}+{tiny_bert}", "--out", str(out), "--no-plot"]
    assert main([*args, "--no-progress"]) == 0
    gate = json.loads(out.read_text(encoding="utf-8"))["datasets"]["mine.csv"]["gate"]
    mix = gate["mixture"]
    assert gate["dir"] == str(tiny_bert) and mix["weights"] == [1.0, 0.0]
    assert mix["tried"] == 1 + 10 * 2  # the first alone, then 10 other weights x 2 modes
    assert mix["dev_accuracy"] == pytest.approx(mix["first_alone"]["dev_accuracy"])
    assert f"Gate: 1 × `{tiny_bert}` + 0 × `{tiny_bert}`" in out.with_suffix(".md").read_text(
        encoding="utf-8"
    )
