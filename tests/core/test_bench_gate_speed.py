"""The gate speed benchmark's ``main`` runs end to end on a tiny BERT and a tiny CSV.

Only the shape and sign of the figures are checked: speed ratios come from the benchmark's own
printed run (BENCHMARKS.md), never from a timed test.
"""

from __future__ import annotations

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


def test_main_writes_gate_figures(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gate_speed.json"
    data = _tiny_csv(tmp_path / "reviews.csv")
    argv = ["--speed-gate", str(tiny_bert), "--speed-data", str(data), "--no-llm"]
    argv += [
        "--n",
        "16",
        "--accuracy-n",
        "20",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
    ]

    assert gate_speed.main(argv) == 0

    report = json.loads(out.read_text(encoding="utf-8"))
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


def test_main_rejects_a_non_positive_n(tiny_bert: Path) -> None:
    with pytest.raises(SystemExit):
        gate_speed.main(["--speed-gate", str(tiny_bert), "--n", "0", "--no-llm"])
