"""A batch job killed with SIGKILL mid-way and started again pays no answer twice and writes
the same output as a run that was never interrupted (a real subprocess, a counting server)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.faultproxy import FaultProxy
from datashunt.batch import BatchConfig, run_batch_job
from tests.core.test_batch import write_jsonl

pq = pytest.importorskip("pyarrow.parquet")

ROWS, BUDGET, CONCURRENCY = 240, 0.5, 4


def _argv(data: Path, out: Path, gate: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "datashunt", "batch", "--data", str(data), "--out", str(out),
        "--gate", str(gate), "--llm-url", url, "--llm-model", "m", "--budget", str(BUDGET),
        "--chunk", "16", "--max-concurrency", str(CONCURRENCY),
    ]  # fmt: skip


def _prompts(proxy: FaultProxy, start: int = 0) -> list[str]:
    return [json.loads(b)["messages"][-1]["content"] for b in proxy.bodies[start:]]


def _cached_prompts(work: Path) -> set[str]:
    with sqlite3.connect(work / "calls.sqlite") as db:
        return {p for (p,) in db.execute("SELECT prompt FROM datashunt_llm_cache")}


def test_sigkill_then_resume_pays_nothing_twice(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ROWS, seed=1)
    want_calls = int(ROWS * BUDGET)

    # the reference: one uninterrupted run (in this process: the same code, less start-up)
    with FaultProxy(None, default="answer:positive") as ref_proxy:
        ref = tmp_path / "ref.parquet"
        cfg = BatchConfig(
            data, ref, tiny_bert, llm_url=ref_proxy.base_url, llm_model="m", budget=BUDGET,
            chunk=16, max_concurrency=CONCURRENCY,
        )  # fmt: skip
        run_batch_job(cfg)
        distinct = len(set(_prompts(ref_proxy)))

    out = tmp_path / "out.parquet"
    with FaultProxy(None, default="answer:positive", delay=0.05) as proxy:
        argv = _argv(data, out, tiny_bert, proxy.base_url)
        log = tmp_path / "killed.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 240
        while proxy.requests < want_calls // 3 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        before = proxy.requests
        assert 0 < before < want_calls and not out.exists()
        paid_before = _cached_prompts(tmp_path / "out.parquet.work")

        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)
        summary = json.loads(done.stdout)
        after = _prompts(proxy, before)

    # no answer that was paid for and kept is asked again; only the calls in flight at the
    # kill (at most one per concurrent slot) can be asked twice
    assert not paid_before & set(after)
    assert len(_prompts(proxy)) - distinct <= CONCURRENCY
    assert summary["paid_calls"] == len(after) and summary["gate_reused"]
    assert summary["resumed_chunks"] >= 1 and summary["llm_rows"] == want_calls
    assert pq.read_table(out).equals(pq.read_table(ref))
