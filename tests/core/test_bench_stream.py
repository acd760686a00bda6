"""bench/stream.py: the whole stream path runs with the gold column removed; the schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench import stream
from bench.stream_sim import SimConfig, run_policy
from datashunt.labelfree import RoundConfig

KEYS = {
    "data",
    "teacher",
    "policy",
    "accuracy",
    "llm_share",
    "last2000_share",
    "fidelity_target",
    "fidelity_violation_rate",
    "repetitions",
    "orders",
    "wall_s",
    "student",
}


def write_mr(root: Path, n: int, *, gold: bool, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A synthetic mr.csv (texts, the LLM's answers, gold only if asked) and its embeddings."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.array([[2.5, 0.0], [-2.5, 0.0]])[y] + rng.normal(size=(n, 2))
    x = np.concatenate([x, rng.normal(size=(n, 6)) * 0.3], axis=1)
    labels = ("negative", "positive")
    answer = np.where(rng.random(n) < 0.99, y, 1 - y)
    (root / "mr").mkdir(parents=True)
    texts = [f"sentence {i}" for i in range(n)]
    with (root / "mr" / "mr.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "text", "llm_label", *(["label"] if gold else [])])
        for i in range(n):
            ans = "" if i % 25 == 0 else labels[answer[i]]  # 4 % unreadable
            w.writerow(["train", texts[i], ans, *([labels[y[i]]] if gold else [])])
    return texts, x


def run_main(tmp_path: Path, *, gold: bool) -> dict:
    data = tmp_path / "data"
    texts, x = write_mr(data, 800, gold=gold)
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(stream.cache_file(texts, cache), x)  # no encoder in a unit test
    out = tmp_path / "res" / "stream.json"
    argv = ["--data", "mr", "--orders", "1", "--target", "0.9", "--bisect", "5"]
    argv += ["--splits", "2", "--shadow", "500"]
    argv += ["--data-dir", str(data), "--cache", str(cache), "--out", str(out)]
    assert stream.main(argv) == 0
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()
    if gold:  # the checks alone, again, with more splits: only their fields change
        before = json.loads(out.read_text())
        assert stream.main([*argv, "--splits", "3", "--checks-only"]) == 0
        after = json.loads(out.read_text())
        ds = [r for r in after["runs"] if r["policy"] == "datashunt"][0]
        assert (
            ds["repetitions"]
            >= [r for r in before["runs"] if r["policy"] == "datashunt"][0]["repetitions"]
        )
        assert [r for r in after["runs"] if r["policy"] != "datashunt"] == [
            r for r in before["runs"] if r["policy"] != "datashunt"
        ]
    return json.loads(out.read_text())


def test_the_whole_path_runs_without_gold(tmp_path: Path) -> None:
    res = run_main(tmp_path, gold=False)
    runs = {r["policy"]: r for r in res["runs"]}
    assert set(runs) == {"datashunt", "margin", "ocl", "llm", "offline-gold"}
    for r in res["runs"]:
        assert set(r) - {"accuracy_with_fallback"} == KEYS
        assert r["accuracy"] is None  # nothing to score against: and nothing was read
    assert runs["llm"]["llm_share"] == 1.0
    assert 0.0 < runs["datashunt"]["llm_share"] < 1.0  # it took over without any gold label


def test_schema_and_figures_with_gold(tmp_path: Path) -> None:
    res = run_main(tmp_path, gold=True)
    runs = {r["policy"]: r for r in res["runs"]}
    assert runs["llm"]["accuracy_with_fallback"] >= runs["llm"]["accuracy"]
    ds = runs["datashunt"]
    assert ds["fidelity_target"] == 0.9 and ds["repetitions"] >= 1
    assert 0.0 <= ds["fidelity_violation_rate"] <= 1.0
    assert ds["accuracy"] > 0.85
    for p in ("margin", "ocl"):  # equal calls, up to the bisection's precision
        assert abs(runs[p]["llm_share"] - ds["llm_share"]) < 0.1


def test_routing_does_not_depend_on_gold(tmp_path: Path) -> None:
    texts, x = write_mr(tmp_path, 900, gold=True)
    with_gold = stream.load_stream(tmp_path / "mr" / "mr.csv", "llm_label", "mr")
    without = stream.load_stream(
        tmp_path / "mr" / "mr.csv", "llm_label", "mr", gold_column="absent"
    )
    assert without.gold is None and with_gold.gold is not None
    cfg = SimConfig(every=200, round=RoundConfig(target=0.9))
    a = run_policy("datashunt", x, with_gold.answers, with_gold.labels, cfg)
    b = run_policy("datashunt", x, without.answers, without.labels, cfg)
    assert (a.asked == b.asked).all() and (a.pred == b.pred).all()
    assert a.kept.any()


def test_unknown_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown run"):
        stream.main(["--data", "nope", "--out", str(tmp_path / "s.json")])


def test_parts_merge_into_one_report(tmp_path: Path) -> None:
    from bench.stream_report import main as merge_main

    part = run_main(tmp_path, gold=False)
    out = tmp_path / "merged" / "stream.json"
    out.parent.mkdir()
    assert merge_main([str(out), str(tmp_path / "res" / "stream.json")]) == 0
    assert json.loads(out.read_text())["runs"] == part["runs"]
    assert "| mr | llm_label | datashunt |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").is_file()


@pytest.mark.slow
def test_the_tuned_student_runs_the_same_path(tmp_path: Path) -> None:
    pytest.importorskip("datashunt.labelfree.tuned")
    data = tmp_path / "data"
    write_mr(data, 600, gold=False)
    out = tmp_path / "res" / "stream_tuned.json"
    argv = ["--data", "mr", "--orders", "1", "--target", "0.6", "--student", "tuned"]
    argv += [
        "--tuned-layers",
        "1",
        "--policies",
        "offline-gold",
        "--splits",
        "2",
        "--shadow",
        "400",
    ]
    argv += ["--data-dir", str(data), "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert stream.main(argv) == 0
    runs = {r["policy"]: r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"datashunt", "offline-gold"}
    assert runs["datashunt"]["student"] == "tuned" and runs["datashunt"]["accuracy"] is None
    assert list((tmp_path / "cache").glob("frozen-*.npz"))  # the frozen layers, cached


def test_student_choice_keeps_the_most_confident_first() -> None:
    from bench.student_choice import kept_at

    probs = np.array([[0.99, 0.01], [0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    agree = np.array([True, True, False, True])
    assert kept_at(probs, agree, 0.95) == 0.5  # the two surest agree; the third does not
    assert kept_at(probs, agree, 0.7) == 1.0  # 3 of 4 overall
    assert kept_at(probs, ~agree, 0.9) == 0.0


def test_llm_share_for_the_accuracy_of_the_llm_alone() -> None:
    from bench.student_choice import llm_share_for

    probs = np.array([[0.99, 0.01], [0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    gold = np.array([0, 0, 1, 1])
    llm = np.array([0, 0, 1, 0])  # 3 of 4 right
    # the two surest are right with the student, the LLM gets the third: 3 of 4 with half sent
    assert llm_share_for(probs, llm, gold, 0.75) == 0.5
    assert llm_share_for(probs, llm, gold, 0.5) == 0.0  # the student alone is right on 2 of 4
    assert llm_share_for(probs, llm, gold, 1.0) == 1.0  # nothing reaches 4 of 4


def test_audits_held_out_feed_the_certificate() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    x = np.array([[2.0, 0.0], [-2.0, 0.0]])[y] + rng.normal(size=(n, 2))
    answers = np.where(rng.random(n) < 0.97, y, 1 - y)
    held = {}
    for share in (0.3, 1.0):
        cfg = SimConfig(every=200, round=RoundConfig(target=0.9), audit_holdout=share)
        tr = run_policy("datashunt", x, answers, ("a", "b"), cfg)
        assert tr.promotions and tr.kept.any()
        held[share] = tr.held
    # every audit after takeover held out, against 0.3 of them: the shadow phase holds the same
    assert held[1.0] > held[0.3] + 50


def embedded_mr(tmp_path: Path) -> list[str]:
    """A synthetic MR stream with gold and its cached embeddings: the ``--data-dir``/``--cache``
    arguments of a short run (600 inputs, 400 in the checks' shadow phase)."""
    texts, x = write_mr(tmp_path / "data", 600, gold=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(stream.cache_file(texts, cache), x)
    argv = ["--data", "mr", "--target", "0.9", "--splits", "1", "--shadow", "400"]
    return [*argv, "--data-dir", str(tmp_path / "data"), "--cache", str(cache)]


def test_policies_left_out_are_not_run(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    argv = [*embedded_mr(tmp_path), "--orders", "1", "--policies", "llm", "--out", str(out)]
    argv += ["--choose", "train", "--audit-holdout", "1"]
    assert stream.main(argv) == 0
    assert {r["policy"] for r in json.loads(out.read_text())["runs"]} == {"datashunt", "llm"}


def test_an_added_order_is_the_same_as_in_a_longer_run(tmp_path: Path) -> None:
    base = embedded_mr(tmp_path)
    shares = []
    for first, orders in ((0, 2), (1, 1)):
        out = tmp_path / f"s{first}.json"
        argv = [*base, "--orders", str(orders), "--first-order", str(first), "--policies", ""]
        assert stream.main([*argv, "--out", str(out)]) == 0
        windows = json.loads(out.with_name(out.stem + "_windows.json").read_text())
        shares.append([o["llm_share"] for o in windows["details"]["mr"]["per_order"]["datashunt"]])
    assert shares[1] == shares[0][1:]


def test_spent_confidences_hold_together() -> None:
    from datashunt.errors import ConfigError
    from datashunt.labelfree import spent_confidence

    misses = [1 - spent_confidence(0.95, k) for k in range(1, 10_001)]
    assert misses[0] == pytest.approx(0.05 * 6 / np.pi**2)
    assert all(a > b for a, b in zip(misses, misses[1:], strict=False))
    assert 0.0499 < sum(misses) <= 0.05  # the union of all of a run's misses stays at 5 %
    with pytest.raises(ConfigError, match="attempt >= 1"):
        spent_confidence(0.95, 0)


def test_spend_certifies_round_k_at_the_spent_confidence(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.stream_sim as sim
    from datashunt.labelfree import spent_confidence

    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    x = np.array([[2.0, 0.0], [-2.0, 0.0]])[y] + rng.normal(size=(n, 2))
    real, seen = sim.train_round, {}

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.setdefault(spend, []).append(args[5].confidence)
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "train_round", spy)
    for spend in (False, True):
        cfg = SimConfig(every=200, round=RoundConfig(target=0.9), spend=spend)
        tr = run_policy("datashunt", x, y, ("a", "b"), cfg)
        assert tr.rounds == len(seen[spend]) >= 2
    assert seen[False] == [0.95] * len(seen[False])
    assert seen[True] == [spent_confidence(0.95, k + 1) for k in range(len(seen[True]))]
