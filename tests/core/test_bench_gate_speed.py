"""The gate speed benchmark runs end to end on a tiny BERT and a tiny CSV: ``main`` (every
backend side by side, ``make bench-gate``) and ``run`` (the issue-6 figures ``make bench`` keeps).

Only the shape and sign of the figures are checked: speed ratios come from the benchmark's own
printed run (BENCHMARKS.md), never from a timed test.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from bench import gate_speed


def _tiny_csv(path: Path) -> Path:
    rows = [
        ("great blender works well", "positive"),
        ("awful and broken after a week", "negative"),
        ("good value", "positive"),
        ("bad smell terrible", "negative"),
    ] * 5
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _run_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gate_speed.add_arguments(parser)
    return parser.parse_args(argv)


def test_run_gives_the_issue_6_figures(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tiny_csv(tmp_path / "reviews.csv")
    argv = ["--speed-gate", str(tiny_bert), "--speed-data", str(data), "--no-llm"]
    argv += ["--n", "16", "--accuracy-n", "20", "--repeats", "1", "--threads", "1"]

    report = gate_speed.run(_run_args(argv))
    print(gate_speed.gate_table(report))
    assert report["runnable"] == {"skipped": True, "reason": "--no-llm"}
    block = report["gate"]["inputs"][str(data)]
    assert block["n"] == 16
    run = block["by_threads"]["1"]
    assert run["threads"] == 1
    assert set(run["median_s"]) == {
        "raw_forward",
        "predict_proba",
        "shunt_decide",
        "sorted_batch32",
        "unsorted_batch32",
        "one_by_one",
        "int8_forward",
    }
    assert all(v > 0 for v in run["median_s"].values())
    assert all(v > 0 for v in run["ratios"].values())
    assert 0 <= run["accuracy"]["fp32"] <= 1 and 0 <= run["accuracy"]["int8"] <= 1
    assert run["accuracy"]["n"] == 20  # the tiny CSV has 20 rows: all of them
    assert 0 < run["single_latency_s"]["p50"] <= run["single_latency_s"]["p95"]
    assert run["single_latency_s"]["n"] == 16
    assert report["peak_rss_mb"] > 0
    assert "| ratio decide_over_raw |" in capsys.readouterr().out


def test_run_rejects_a_non_positive_n(tiny_bert: Path) -> None:
    with pytest.raises(SystemExit):
        gate_speed.run(_run_args(["--speed-gate", str(tiny_bert), "--n", "0", "--no-llm"]))


def test_main_puts_every_backend_side_by_side(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tiny_csv(tmp_path / "reviews.csv")
    out = tmp_path / "gate.json"
    argv = ["--gate", str(tiny_bert), "--short-data", str(data), "--long-data", str(data)]
    argv += ["--variants", "torch/fp32,onnx/int8", "--threads", "1", "--repeats", "1"]
    argv += ["--n-short", "8", "--n-long", "4", "--single-n", "5", "--accuracy-n", "20"]
    argv += ["--out", str(out)]

    assert gate_speed.main(argv) == 0

    rows = json.loads(out.read_text(encoding="utf-8"))
    assert list(rows) == ["rows"]  # the schema of issue 26, nothing else
    assert len(rows["rows"]) == 4  # 2 variants x short/long x 1 thread
    for row in rows["rows"]:
        assert tuple(row) == gate_speed.ROW_KEYS
        assert (row["backend"], row["precision"]) in {("torch", "fp32"), ("onnx", "int8")}
        assert row["rows_per_s"] > 0 and 0 < row["single_p50_ms"] <= row["single_p95_ms"]
        assert 0 <= row["accuracy"] <= 1 and row["size_mb"] > 0 and row["peak_mb"] > 0
    details = json.loads((tmp_path / "gate.details.json").read_text(encoding="utf-8"))
    for length in ("short", "long"):
        parts = details["breakdown_ms"][length]["onnx/int8"]
        assert parts["forward"] > 0 and parts["total"] >= parts["forward"]
        assert details["goals"][length]["onnx_int8_over_torch_fp32"] > 0
    assert set(details["guarantee"]) == {"torch/fp32", "onnx/int8"}
    fit = details["timings"]["long/1"]["length_fit"]["onnx/int8"]
    assert set(fit) == {"fixed_ms", "us_per_token", "p95_over_p50_from_lengths"}
    # fp32 against itself: nothing can move
    assert details["accuracy"]["torch/fp32"]["short"]["agreement_with_fp32"] == 1.0
    table = (tmp_path / "gate.md").read_text(encoding="utf-8")
    assert "| onnx | int8 | short | 1 |" in table
    assert table.split("\n\n", 2)[2].strip() in capsys.readouterr().out


def test_main_rejects_a_non_positive_count(tiny_bert: Path) -> None:
    with pytest.raises(SystemExit):
        gate_speed.main(["--gate", str(tiny_bert), "--n-short", "0"])


def test_dev_check_counts_changed_answers_and_points_lost(tiny_bert: Path, tmp_path: Path) -> None:
    import numpy as np

    from bench import gate_speed_dev

    gold = np.array([0, 1, 1, 0])
    ref = np.array([[2.0, 0], [0, 2], [2, 0], [0, 2]])  # 2 of 4 right
    other = np.array([[2.0, 0], [0, 2], [0, 2], [2, 0]])  # both wrong answers changed: 4 of 4
    out = gate_speed_dev.compare({"torch/fp32": ref, "x": other}, gold, "torch/fp32")
    assert out["torch/fp32"] == {"accuracy": 0.5}
    assert out["x"] == {"accuracy": 1.0, "changed": 2, "points_lost": -50.0}

    data = str(_tiny_csv(tmp_path / "reviews.csv"))
    dst = tmp_path / "dev.json"
    argv = ["--gate", str(tiny_bert), "--short-data", data, "--long-data", data, "--out", str(dst)]
    assert gate_speed_dev.main([*argv, "--threads", "1"]) == 0
    report = json.loads(dst.read_text(encoding="utf-8"))
    for length in ("short", "long"):
        rows = report[length]
        assert rows["n"] == 20
        assert set(rows) >= {"torch/int8", "torch/bf16", "onnx/fp32", "onnx/int8"}
        assert rows["onnx/fp32"]["changed"] == 0  # the same model, another runtime
        for name in ("torch/int8", "torch/bf16", "onnx/int8"):
            lost = 100 * (rows["torch/fp32"]["accuracy"] - rows[name]["accuracy"])
            assert rows[name]["points_lost"] == pytest.approx(lost, abs=0.01)


def test_goals_count_two_answers_of_400_as_half_a_point() -> None:
    # 0.8925 - 0.8875 is 0.5000000000000004 points in floats: the goal (at most 0.5) was
    # judged missed on exactly 2 answers lost of 400
    def row(backend: str, precision: str, rows_per_s: float, accuracy: float) -> dict:
        return {
            "backend": backend,
            "precision": precision,
            "length": "long",
            "threads": 2,
            "rows_per_s": rows_per_s,
            "accuracy": accuracy,
            "single_p50_ms": 7.0,
            "single_p95_ms": 14.0,
        }

    rows = [row("torch", "fp32", 50.0, 0.8925), row("onnx", "int8", 110.0, 0.8875)]
    out = gate_speed.goals(rows, {}, {}, 2)["long"]
    assert out["points_lost"] == 0.5 and out["throughput_goal_met"] is True
    assert out["latency_goal_met"] is True
    rows[1]["accuracy"] = 0.885  # 3 answers: 0.75 point, missed
    assert gate_speed.goals(rows, {}, {}, 2)["long"]["throughput_goal_met"] is False


def test_length_fit_gives_the_tail_that_the_lengths_alone_make() -> None:
    # 1 ms + 40 µs a token, exactly: the fit finds both, and the p95/p50 of these lengths
    tokens = [20, 50, 100, 100, 110, 256, 256]
    seconds = [(1.0 + 0.04 * n) / 1000 for n in tokens]
    fit = gate_speed.length_fit(tokens, seconds)
    assert fit["fixed_ms"] == pytest.approx(1.0, abs=1e-3)
    assert fit["us_per_token"] == pytest.approx(40.0, abs=0.01)
    p50, p95 = 100, 256  # numpy's p95 of these 7 lengths is the 256 they end with
    assert fit["p95_over_p50_from_lengths"] == round((1 + 0.04 * p95) / (1 + 0.04 * p50), 2)
    assert gate_speed.length_fit([30, 30], [0.002, 0.004])["us_per_token"] == 0.0
