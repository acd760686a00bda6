"""Issue 27, item 1: a batch job with failed LLM rows still writes its output, marks the failed
rows with their error, does not count them as done, and stops fast on a dead endpoint. The LLM
is a scriptable fake OpenAI-compatible server that counts what it is asked."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from bench.faultproxy import FaultProxy
from datashunt.batch import BatchConfig, run_batch_job
from datashunt.cli import main
from datashunt.errors import LLMError
from datashunt.llm import RetryPolicy
from tests.core.test_batch import write_jsonl

pq = pytest.importorskip("pyarrow.parquet")

ROWS, BUDGET, CHUNK, CONCURRENCY = 120, 0.5, 8, 4
LLM_ROWS = int(ROWS * BUDGET)
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def _cfg(data: Path, out: Path, gate: Path, url: str, **kw: object) -> BatchConfig:
    return BatchConfig(
        data, out, gate, llm_url=url, llm_model="m", budget=BUDGET, chunk=CHUNK,
        max_concurrency=CONCURRENCY, retry=FAST, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _prompts(proxy: FaultProxy, start: int = 0, fault: str | None = None) -> list[str]:
    pairs = list(zip(proxy.bodies, proxy.log, strict=True))[start:]
    return [
        json.loads(b)["messages"][-1]["content"]
        for b, f in pairs
        if fault is None or f.startswith(fault)
    ]


def _llm_rows(out: Path) -> list[dict[str, object]]:
    return [r for r in pq.read_table(out).to_pylist() if r["route"] == "llm"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", ROWS, seed=3)


@pytest.fixture
def reference(data: Path, tiny_bert: Path, tmp_path: Path) -> list[dict[str, object]]:
    """The output of a job whose LLM never failed."""
    with FaultProxy(None, default="answer:positive") as proxy:
        run_batch_job(_cfg(data, tmp_path / "ref.parquet", tiny_bert, proxy.base_url))
    return pq.read_table(tmp_path / "ref.parquet").to_pylist()


def test_one_http_400_writes_the_output_and_a_rerun_asks_that_row_only(
    data: Path, tiny_bert: Path, tmp_path: Path, reference: list[dict[str, object]]
) -> None:
    out = tmp_path / "out.parquet"
    with FaultProxy(None, ["answer:positive"] * 20 + ["400"], default="answer:positive") as p:
        first = run_batch_job(_cfg(data, out, tiny_bert, p.base_url))
        failed = [r for r in _llm_rows(out) if r["error"] is not None]
        assert len(failed) == 1 and first.failed_rows == 1
        assert "HTTP 400" in str(failed[0]["error"]) and failed[0]["source"] == "fallback"
        assert failed[0]["label"] == failed[0]["gate_label"]  # the gate's label stands
        bad_prompt = _prompts(p, fault="400")
        seen = p.requests

        second = run_batch_job(_cfg(data, out, tiny_bert, p.base_url))
        assert _prompts(p, seen) == bad_prompt  # exactly the failed row, once
    assert second.failed_rows == 0 and second.reasked_rows == 1 and second.paid_calls == 1
    assert pq.read_table(out).to_pylist() == reference


def test_dead_endpoint_stops_fast_with_one_line_and_rerun_asks_the_failed_rows(
    data: Path,
    tiny_bert: Path,
    tmp_path: Path,
    reference: list[dict[str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, stop_after, answered = tmp_path / "out.parquet", 5, 20
    argv = [
        "batch", "--data", str(data), "--out", str(out), "--gate", str(tiny_bert),
        "--llm-model", "m", "--budget", str(BUDGET), "--chunk", str(CHUNK),
        "--max-concurrency", str(CONCURRENCY), "--llm-attempts", "2",
        "--stop-after-failures", str(stop_after),
    ]  # fmt: skip
    # the LLM answers 20 rows, then every request fails (503) from then on
    with FaultProxy(None, ["answer:positive"] * answered, default="503") as proxy:
        t0 = time.perf_counter()
        code = main([*argv, "--llm-url", proxy.base_url])
        elapsed = time.perf_counter() - t0
        err = capsys.readouterr().err.strip().splitlines()
        after_death = proxy.requests - answered
        # each call in flight or failing in a row pays its retries, then nothing more is sent
        assert code == 2 and len(err) == 1 and err[0].startswith("datashunt: error: stopped")
        assert "503" in err[0] and "run the same command again" in err[0]
        assert after_death <= (stop_after + CONCURRENCY) * 2, after_death
        rows = _llm_rows(out)  # the output is written, every unanswered row marked
        failed = [r for r in rows if r["error"] is not None]
        assert len(rows) == LLM_ROWS and len(failed) == LLM_ROWS - answered
        assert all(r["source"] == "fallback" for r in failed)
        assert any(str(r["error"]).startswith("not asked") for r in failed)
        paid = set(_prompts(proxy, fault="answer"))

        proxy.default = "answer:positive"  # the endpoint is back
        seen = proxy.requests
        assert main([*argv, "--llm-url", proxy.base_url, "--resume"]) == 0
        again = _prompts(proxy, seen)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not paid & set(again) and len(again) == len(set(again)) == len(failed)
    assert summary["reasked_rows"] == len(failed) and summary["failed_rows"] == 0
    assert pq.read_table(out).to_pylist() == reference
    assert elapsed < 30  # (a 5,000-row job once retried for 427 s)


def test_nothing_listening_stops_at_once(data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: every connect is refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match="5 LLM calls failed in a row .*could not reach"):
        run_batch_job(_cfg(data, tmp_path / "o.parquet", tiny_bert, url, stop_after_failures=5))
    assert time.perf_counter() - t0 < 30
    rows = _llm_rows(tmp_path / "o.parquet")
    assert len(rows) == LLM_ROWS and all(r["error"] is not None for r in rows)


def test_resume_without_an_earlier_run_says_so(
    data: Path, tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["batch", "--data", str(data), "--out", str(tmp_path / "o.parquet")]
    argv += ["--gate", str(tiny_bert), "--llm-column", "text", "--budget", "0.5", "--resume"]
    assert main(argv) == 2
    assert "--resume: no job to resume" in capsys.readouterr().err
