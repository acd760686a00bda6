"""Batch jobs on the local engine: budget-exact routing, the output, the cache, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.faultproxy import FaultProxy
from datashunt.batch import BatchConfig, route_by_budget, route_by_delta, run_batch_job
from datashunt.errors import ConfigError

pq = pytest.importorskip("pyarrow.parquet")

WORDS = ["good", "bad", "great", "awful", "it", "is", "product", "not", "very", "book"]


def write_jsonl(path: Path, n: int, *, seed: int = 0, extra: dict[str, str] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"id": f"r{i}", "text": " ".join(rng.choice(WORDS, 4))}
            row |= {k: v for k, v in (extra or {}).items()}
            fh.write(json.dumps(row) + "\n")
    return path


# ---- routing ---------------------------------------------------------------------------------


def test_budget_is_exact_under_ties() -> None:
    # a saturated gate: 900 of 1,000 rows tie at 1.0, 100 tie at 0.6
    conf = np.array([1.0] * 900 + [0.6] * 100)
    ids = [f"x{i}" for i in range(1000)]
    for budget in (0.0, 0.05, 0.1, 0.3, 0.777, 1.0):
        r = route_by_budget(conf, ids, budget)
        assert r.to_llm.sum() == round(budget * 1000)
        # nobody above δ is asked, everybody below it is
        assert not np.any(r.to_llm & (conf > r.delta))
        assert np.all(r.to_llm[conf < r.delta])


def test_budget_tie_break_is_by_id_not_position() -> None:
    conf = np.full(1000, 0.8)
    ids = [f"x{i}" for i in range(1000)]
    chosen = np.flatnonzero(route_by_budget(conf, ids, 0.2).to_llm)
    assert len(chosen) == 200
    assert chosen.max() > 500  # not the first 200 rows of the file
    again = route_by_budget(conf[::-1], ids[::-1], 0.2).to_llm[::-1]
    assert np.array_equal(np.flatnonzero(again), chosen)  # the same rows, whatever the order


def test_budget_without_ties_gives_a_delta_that_routes_alone() -> None:
    conf = np.linspace(0.5, 1.0, 101)
    r = route_by_budget(conf, [str(i) for i in range(101)], 0.3)
    assert r.tied == 0
    assert np.array_equal(r.to_llm, conf < r.delta)


def test_invalid_rows_are_never_routed() -> None:
    conf = np.array([np.nan, 0.5, 0.9, np.nan])
    assert route_by_budget(conf, list("abcd"), 1.0).to_llm.tolist() == [False, True, True, False]
    assert route_by_delta(conf, 0.95).to_llm.tolist() == [False, True, True, False]


def test_config_says_what_to_fix(tmp_path: Path) -> None:
    base = {"data": tmp_path / "a.csv", "out": tmp_path / "o.parquet", "gate": tmp_path}
    with pytest.raises(ConfigError, match="either --llm-url"):
        BatchConfig(**base)
    with pytest.raises(ConfigError, match="budget must be in"):
        BatchConfig(**base, llm_column="x", budget=1.5)
    with pytest.raises(ConfigError, match="not both"):
        BatchConfig(**base, llm_column="x", budget=0.3, delta=0.9)
    with pytest.raises(ConfigError, match=".parquet"):
        BatchConfig(**{**base, "out": tmp_path / "o.csv"}, llm_column="x")


# ---- a job, end to end ----------------------------------------------------------------------


def test_job_meets_the_budget_and_pays_each_prompt_once(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", 300)
    with FaultProxy(None, default="answer:positive") as proxy:
        cfg = BatchConfig(
            data,
            tmp_path / "out.parquet",
            tiny_bert,
            llm_url=proxy.base_url,
            llm_model="m",
            budget=0.3,
            chunk=32,
            max_concurrency=4,
        )
        first = run_batch_job(cfg)
        paid = proxy.requests
        second = run_batch_job(cfg)  # finished job, run again: nothing paid
        assert proxy.requests == paid
    assert first.llm_rows == 90 and first.llm_share == pytest.approx(0.3)
    assert first.paid_calls == paid and first.paid_calls + first.cache_hits == 90
    prompts = [json.loads(b)["messages"][-1]["content"] for b in proxy.bodies]
    assert len(set(prompts)) == len(prompts)  # identical prompts are asked once
    assert second.paid_calls == 0 and second.gate_reused
    out = pq.read_table(cfg.out).to_pylist()
    assert [r["id"] for r in out] == [f"r{i}" for i in range(300)]
    llm = [r for r in out if r["route"] == "llm"]
    assert len(llm) == 90
    assert all(r["label"] == "positive" and r["llm_answer"] == "positive" for r in llm)
    assert all(
        r["source"] == "small" and r["candidates"] == [r["gate_label"]]
        for r in out
        if r["route"] == "small"
    )
    assert max(r["confidence"] for r in llm) <= min(
        r["confidence"] for r in out if r["route"] == "small"
    )


def test_llm_column_csv_and_invalid_rows(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text(
        "text,llm\ngood book,positive\n,negative\nawful product,negative\nit is,positive\n",
        encoding="utf-8",
    )
    cfg = BatchConfig(data, tmp_path / "o.parquet", tiny_bert, llm_column="llm", delta=1.0)
    s = run_batch_job(cfg)
    out = pq.read_table(cfg.out).to_pylist()
    assert s.rows == 4 and s.valid == 3 and s.paid_calls == 3
    assert [r["id"] for r in out] == ["0", "1", "2", "3"]  # no id column: the row number
    assert out[1]["route"] == "invalid" and out[1]["label"] is None and "empty" in out[1]["error"]
    assert [r["label"] for r in out if r["route"] == "llm"] == ["positive", "negative", "positive"]


def test_work_dir_of_another_job_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", 20, extra={"ans": "negative"})
    out = tmp_path / "o.parquet"
    run_batch_job(BatchConfig(data, out, tiny_bert, llm_column="ans", budget=0.5))
    with pytest.raises(ConfigError, match="another job's work.*budget"):
        run_batch_job(BatchConfig(data, out, tiny_bert, llm_column="ans", budget=0.2))


def test_cli_batch(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datashunt.cli import main

    data = write_jsonl(tmp_path / "in.jsonl", 40, extra={"ans": "negative"})
    pq.write_table(_as_table(data), tmp_path / "in.parquet")
    out = tmp_path / "o.parquet"
    argv = ["batch", "--data", str(tmp_path / "in.parquet"), "--out", str(out)]
    argv += ["--gate", str(tiny_bert), "--llm-column", "ans", "--budget", "0.25"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["llm_rows"] == 10 and summary["out"] == str(out)
    assert main([*argv[:-2], "--budget", "2"]) == 2
    assert "budget must be in [0, 1]" in capsys.readouterr().err


def _as_table(path: Path) -> object:
    import pyarrow.json

    return pyarrow.json.read_json(path)


def test_importing_datashunt_loads_no_ray_or_pyarrow() -> None:
    code = (
        "import sys, datashunt, datashunt.batch, datashunt.cli; datashunt.cli.build_parser();"
        "print(sorted(m for m in ('ray', 'pyarrow', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_batch_all_is_pinned() -> None:
    import datashunt.batch

    assert set(datashunt.batch.__all__) == {
        "BatchConfig",
        "BatchSummary",
        "Engine",
        "GateScorer",
        "Routing",
        "read_input",
        "route_by_budget",
        "route_by_delta",
        "run_batch_job",
    }
