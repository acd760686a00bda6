"""The quality/cost benchmark: every figure recomputed by hand from a deterministic gate and LLM.

No timing is asserted; the figures come from the benchmark's own printed runs (BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datashunt.benchmark
from datashunt import ConfigError, LLMError, LLMReply, LLMRequest, RetryPolicy
from datashunt.benchmark import (
    METHODS,
    TASKS,
    Answer,
    BenchConfig,
    TaskSpec,
    bench_dataset,
    markdown_report,
    plot_curves,
    task_for,
)
from datashunt.benchmark.baselines import oracle_accuracy, route_lowest
from datashunt.data import Dataset, Example
from datashunt.llm import CachedLLM, LLMCache, ReplayLLM
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")
TASK = TaskSpec("Label as {candidates}. {hint}Text: {text}\nAnswer:", "text")

# (text, gold, group): keyword texts are confident (right or wrong), the rest uncertain
ROWS = [
    ("good fine product", "positive", "a"),
    ("great stuff here", "positive", "a"),
    ("bad one", "negative", "a"),
    ("awful thing", "negative", "b"),
    ("good but wrong", "negative", "b"),  # confident and wrong
    ("so so item", "positive", "a"),  # uncertain from here on
    ("plain words", "negative", "b"),
    ("nothing to say", "positive", "b"),
    ("meh it is", "negative", "a"),
    ("okay i guess", "positive", "b"),
]
# what the fake LLM answers, per text: right on all but two uncertain inputs and one confident
LLM_SAYS = {t: g for t, g, _ in ROWS}
LLM_SAYS["plain words"] = "positive"
LLM_SAYS["okay i guess"] = "negative"
LLM_SAYS["bad one"] = "positive"


def _data(rows: list[tuple[str, str, str]]) -> Dataset:
    return Dataset(tuple(Example(t, g, grp) for t, g, grp in rows), LABELS, "toy")


def _llm(req: LLMRequest) -> LLMReply:
    return LLMReply(LLM_SAYS[req.text], None, prompt_tokens=20, completion_tokens=1, model="fake")


def _run(llm: object, **kw: object) -> dict:
    cfg = BenchConfig(datasets=("toy",), target="budget:0.5", curve_points=11, **kw)  # type: ignore[arg-type]
    return bench_dataset(
        "toy",
        KeywordGate(),
        llm,  # type: ignore[arg-type]
        cfg,
        dev=_data(ROWS),
        test=_data(ROWS),
        task=TASK,
        progress=False,
    )


def test_every_method_is_computed_as_defined() -> None:
    fake = FakeLLM(_llm)
    res = _run(fake)
    m = res["methods"]
    assert list(m) == list(METHODS)
    gold = np.array([LABELS.index(g) for _, g, _ in ROWS])
    probs = KeywordGate().predict_proba([t for t, _, _ in ROWS])
    small = probs.argmax(axis=1) == gold
    llm = np.array([LLM_SAYS[t] == g for t, g, _ in ROWS])
    assert m["small"]["accuracy"] == pytest.approx(small.mean())
    assert m["small"]["llm_calls"] == 0
    assert m["llm"]["accuracy"] == pytest.approx(llm.mean()) == pytest.approx(0.7)
    assert m["llm"]["llm_calls"] == 10 and m["llm"]["tokens"] == 210
    # the shunt: the inputs under δ (at the calibrated temperature) go to the LLM
    conf = (
        KeywordGate(temperature=res["temperature"])
        .predict_proba([t for t, _, _ in ROWS])
        .max(axis=1)
    )
    routed = conf < res["threshold"]
    assert 0 < routed.sum() < 10
    expect = np.where(routed, llm, small).mean()
    assert m["ds-none"]["accuracy"] == pytest.approx(expect)
    assert m["ds-none"]["llm_calls"] == routed.sum() == m["ds-soft"]["llm_calls"]
    assert m["ds-none"]["tokens"] == 21 * routed.sum()
    assert res["test_llm_rate"] == pytest.approx(routed.mean())
    # random: the expectation at the same rate; oracle: hindsight at the same rate
    r = routed.mean()
    assert m["random"]["accuracy"] == pytest.approx((1 - r) * small.mean() + r * llm.mean())
    helps = int((~small & llm).sum())
    assert m["oracle"]["accuracy"] == pytest.approx(small.mean() + min(routed.sum(), helps) / 10)
    assert m["oracle"]["accuracy"] >= m["ds-none"]["accuracy"]
    # the soft prompt carries the gate's hint; none does not
    soft = [q.prompt for q in fake.requests if "probability" in q.prompt]
    assert len(soft) == 2 * routed.sum()  # ds-soft and ds-plus


def test_the_curve_runs_from_small_alone_to_llm_alone() -> None:
    res = _run(FakeLLM(_llm))
    c, m = res["curve"], res["methods"]
    assert c["llm_rate"][0] == 0 and c["llm_rate"][-1] == 1
    assert c["ds_none"][0] == pytest.approx(m["small"]["accuracy"])
    assert c["ds_none"][-1] == pytest.approx(m["llm"]["accuracy"])
    assert c["random"][-1] == pytest.approx(m["llm"]["accuracy"])
    assert c["oracle"][0] == pytest.approx(m["small"]["accuracy"])
    assert c["oracle"][-1] == pytest.approx(m["llm"]["accuracy"])  # everything asked
    assert all(o >= d - 1e-12 for o, d in zip(c["oracle"], c["ds_none"], strict=True))


def test_route_lowest_sends_exactly_k_and_breaks_ties_by_position() -> None:
    small = np.array([True, False, True, False])
    llm = np.array([False, True, False, True])
    score = np.array([0.5, 0.2, 0.2, 0.9])
    # one input: of the tie at 0.2 the earlier (1) goes, where a δ could not split the tie
    assert route_lowest(score, small, llm, 1).tolist() == [True, True, True, False]
    assert route_lowest(score, small, llm, 2).tolist() == [True, True, False, False]
    assert route_lowest(score, small, llm, 3).tolist() == [False, True, False, False]
    assert route_lowest(score, small, llm, 0).tolist() == small.tolist()
    assert route_lowest(score, small, llm, 4).tolist() == llm.tolist()


def test_oracle_accuracy_asks_where_the_llm_helps_first_and_hurts_last() -> None:
    small = np.array([True, False, True, False, True])
    llm = np.array([False, True, True, False, True])  # helps at 1, hurts at 0, neutral 2-4
    assert oracle_accuracy(0, small, llm) == pytest.approx(3 / 5)
    assert oracle_accuracy(1, small, llm) == pytest.approx(4 / 5)
    assert oracle_accuracy(4, small, llm) == pytest.approx(4 / 5)  # the neutral ones cost 0
    assert oracle_accuracy(5, small, llm) == pytest.approx(llm.mean())  # everything asked


def test_per_group_figures() -> None:
    res = _run(FakeLLM(_llm))
    assert set(res["groups"]) == {"a", "b"}
    a = res["groups"]["a"]
    assert a["n"] == 5
    # group a: the gate is right on all but "so so item"/"meh it is" (uncertain, argmax negative)
    idx = [i for i, r in enumerate(ROWS) if r[2] == "a"]
    gold = np.array([LABELS.index(ROWS[i][1]) for i in idx])
    probs = KeywordGate().predict_proba([ROWS[i][0] for i in idx])
    assert a["small"]["accuracy"] == pytest.approx((probs.argmax(axis=1) == gold).mean())
    assert a["llm"]["llm_rate"] == 1.0


def test_failed_and_unrecorded_answers_fall_back_to_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"text": "good fine product", "answer": "positive"}) + "\n")
    res = _run(ReplayLLM(path))
    m = res["methods"]
    assert m["llm"]["fallbacks"] == 9  # one recorded answer out of ten
    assert m["llm"]["accuracy"] == pytest.approx(0.1)  # alone, the LLM has nothing to fall back on
    # the shunt's routed inputs were never recorded: it answers them with the gate's labels
    assert m["ds-none"]["accuracy"] == pytest.approx(m["small"]["accuracy"])


def test_a_rerun_is_served_by_the_cache_with_the_same_figures(tmp_path: Path) -> None:
    fake = FakeLLM(_llm, delay=0.01)
    first = _run(CachedLLM(fake, LLMCache(tmp_path / "c.sqlite"), "fake"))
    asked = len(fake.requests)
    cached = CachedLLM(fake, LLMCache(tmp_path / "c.sqlite"), "fake")
    second = _run(cached, concurrency=3)
    assert len(fake.requests) == asked and cached.misses == 0
    for key in ("accuracy", "llm_calls", "tokens"):
        assert [m[key] for m in first["methods"].values()] == [
            m[key] for m in second["methods"].values()
        ]
    # none and hard prompts are the same for 2 labels: the shunt's prompts repeat the LLM's
    assert asked < 10 + 4 * first["methods"]["ds-none"]["llm_calls"]


def test_report_markdown_and_plot(tmp_path: Path) -> None:
    res = _run(FakeLLM(_llm))
    report = {"model": "fake", "datasets": {"toy": res}}
    md = markdown_report(report)
    assert "| LLM alone | 70.0 | 100.0 | 210 |" in md
    assert "| a | 5 |" in md
    png = plot_curves(report, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown bench methods"):
        BenchConfig(methods=("small", "magic"))
    with pytest.raises(ConfigError, match="test_n"):
        BenchConfig(test_n=1)
    with pytest.raises(ConfigError):
        BenchConfig(target="nonsense:3")
    with pytest.raises(ConfigError, match="labels"):
        bench_dataset(
            "toy",
            KeywordGate(),
            FakeLLM(_llm),
            BenchConfig(datasets=("toy",)),
            dev=_data(ROWS),
            test=Dataset((Example("x", "neutral"),), ("neutral",), "t"),
            task=TASK,
            progress=False,
        )


def test_the_cli_replays_recorded_answers_and_writes_every_output(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datashunt import read_dataset
    from datashunt.cli import main

    test = read_dataset("sst2", split="test", limit=12)
    answers = tmp_path / "answers.jsonl"
    with answers.open("w", encoding="utf-8") as fh:
        for e in test.examples:  # a perfect LLM, recorded
            fh.write(json.dumps({"text": e.text, "answer": e.label, "prompt_tokens": 30}) + "\n")
    out = tmp_path / "bench.json"
    argv = ["bench", "--data", "sst2", "--gate", f"sst2={tiny_bert}", "--test-n", "12"]
    argv += ["--dev-n", "20", "--replay", str(answers), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    res = report["datasets"]["sst2"]
    assert res["n_test"] == 12 and res["gate"]["dir"] == str(tiny_bert)
    assert res["methods"]["llm"]["accuracy"] == 1.0
    assert res["methods"]["llm"]["tokens"] == 12 * 30
    assert res["methods"]["oracle"]["accuracy"] >= res["methods"]["ds-none"]["accuracy"]
    assert report["llm"]["replay_misses"] == 0
    assert out.with_suffix(".md").read_text(encoding="utf-8").startswith("### sst2")
    assert out.with_suffix(".png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_the_cli_explains_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    from datashunt.cli import main

    assert main(["bench", "--gate", "nodir", "--replay", "x.jsonl"]) == 2
    assert "--gate wants DATA=DIR" in capsys.readouterr().err
    assert main(["bench", "--data", "sst2", "--llm-url", "http://127.0.0.1:9/v1"]) == 2
    assert "needs --llm-model" in capsys.readouterr().err
    # --record writes the answer cache out: with a replay file there is no cache to write
    assert main(["bench", "--replay", "x.jsonl", "--record", "y.jsonl"]) == 2
    assert "--record" in capsys.readouterr().err


def test_the_llm_alone_has_no_fallback_but_the_shunt_has() -> None:
    def garbled(req: LLMRequest) -> LLMReply:
        if req.text == "okay i guess":  # the gate is unsure of it; the LLM's answer is unreadable
            return LLMReply("¯\\_(ツ)_/¯", None, 20, 1)
        return _llm(req)

    res = _run(FakeLLM(garbled))
    m = res["methods"]
    assert m["llm"]["fallbacks"] == 1
    # LLM alone: the unreadable answer is wrong (0.7 before: "okay i guess" was already wrong)
    assert m["llm"]["accuracy"] == pytest.approx(0.7)
    assert m["llm"]["llm_accuracy_on_routed"] == pytest.approx(0.7)
    # the shunt answers with the gate's label there: "okay i guess" has no keyword, so the gate
    # says its first label, negative, and the gold label is positive
    assert m["ds-none"]["fallbacks"] == 1


def test_transient_llm_errors_are_retried_by_the_engine() -> None:
    failed: set[str] = set()

    def flaky(req: LLMRequest) -> LLMReply:
        if req.text not in failed:  # every input's first call meets a 503
            failed.add(req.text)
            raise LLMError("busy", status=503)
        return _llm(req)

    fake = FakeLLM(flaky)
    retried = bench_dataset(
        "toy",
        KeywordGate(),
        fake,
        BenchConfig(datasets=("toy",), target="budget:0.5", curve_points=11),
        dev=_data(ROWS),
        test=_data(ROWS),
        task=TASK,
        retry=RetryPolicy(attempts=2, base_delay=0.0),
        progress=False,
    )
    steady = _run(FakeLLM(_llm))
    assert len(fake.requests) > 10  # the first 10 failed, each was asked again
    for key in METHODS:
        assert retried["methods"][key]["accuracy"] == steady["methods"][key]["accuracy"], key
    assert retried["methods"]["llm"]["fallbacks"] == 0


def test_an_answer_counts_as_right_only_when_it_is_the_gold_label() -> None:
    llm = Answer("positive", "llm", 20, 1, 0.5)
    fallback = Answer("positive", "fallback", 0, 0, 0.1)
    assert llm.tokens == 21 and fallback.tokens == 0
    assert llm.is_right("positive") and llm.is_right("positive", strict=True)
    assert not llm.is_right("negative")
    # the gate's label stands in for an unreadable answer, but not for the LLM alone
    assert fallback.is_right("positive") and not fallback.is_right("positive", strict=True)


def test_each_bundled_data_set_has_its_own_prompt() -> None:
    assert task_for("sst2") is TASKS["sst2"]
    assert "{text}" in task_for("my-own-data").template
    assert task_for("my-own-data") not in TASKS.values()


def test_the_public_api_is_pinned() -> None:
    assert set(datashunt.benchmark.__all__) == {
        "METHODS",
        "METHOD_NAMES",
        "TASKS",
        "Answer",
        "BenchConfig",
        "TaskSpec",
        "bench_dataset",
        "markdown_report",
        "plot_curves",
        "prepare_gate",
        "run_bench",
        "task_for",
        "write_json",
    }
    for name in datashunt.benchmark.__all__:
        assert hasattr(datashunt.benchmark, name), name
