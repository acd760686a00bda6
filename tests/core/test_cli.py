"""The CLI end to end on a tiny backbone: train-gate, calibrate, predict, store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datashunt import CallRecord, CallStore, ShuntPolicy
from datashunt.cli import main


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rows = ["split,text,label"]
    for i in range(30):
        rows.append(f"{'train' if i < 20 else 'dev'},this was good great {i},1")
        rows.append(f"{'train' if i < 20 else 'dev'},this was bad awful {i},0")
    f = tmp_path / "d.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_train_calibrate_predict(
    tiny_bert: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gate"
    data = [
        "--data",
        str(data_file),
        "--split-col",
        "split",
        "--label-names",
        "0=negative,1=positive",
    ]
    assert (
        main(
            [
                "train-gate",
                *data,
                "--out",
                str(out),
                "--backbone",
                str(tiny_bert),
                "--epochs",
                "3",
                "--lr",
                "5e-3",
                "--batch-size",
                "8",
                "--max-length",
                "16",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "dev accuracy" in printed and (out / "model.safetensors").is_file()
    assert json.loads((out / "datashunt_train.json").read_text())["report"]["n_train"] == 40

    assert main(["calibrate", "--gate", str(out), *data, "--target", "budget:0.25"]) == 0
    printed = capsys.readouterr().out
    assert "ECE" in printed and "LLM-rate" in printed
    policy = ShuntPolicy.load(out)
    assert policy.metrics["llm_rate"] <= 0.25 and policy.labels == ("negative", "positive")

    assert main(["predict", "--gate", str(out), "good great", "bad awful"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["route"] in ("small", "llm") for x in lines] == [True, True]


def test_errors_exit_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--gate", str(tmp_path / "nope"), "--data", "amazon-mds"]) == 2
    assert "never downloaded" in capsys.readouterr().err
    assert (
        main(["train-gate", "--data", "x.csv", "--out", str(tmp_path), "--label-names", "0"]) == 2
    )
    assert "RAW=NAME" in capsys.readouterr().err


def test_store_stats_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.sqlite"
    CallStore(db).add(CallRecord(route="llm", input_text="x", response="positive"))
    assert main(["store", "stats", "--store", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["llm_calls"] == 1
    assert main(["store", "export", "--store", str(db), "--out", str(tmp_path / "o.jsonl")]) == 0
    assert (tmp_path / "o.jsonl").read_text().count("\n") == 1


def test_llm_server_options_reach_the_server_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from datashunt.llm import server_cli

    seen: list[list[str]] = []
    monkeypatch.setattr(server_cli, "main", lambda argv: seen.append(list(argv)) or 0)
    assert main(["llm-server", "--n-ctx", "512", "--port", "8081"]) == 0
    assert seen == [["--n-ctx", "512", "--port", "8081"]]
