"""Issue 25, item 1: ``datashunt batch`` with no gate yet (a shadow job, ``--labels``).

Every valid row goes to the LLM as a user's chain would ask it, each answer is recorded in the
store with its parsed label, and ``datashunt bootstrap`` trains the first gate from that store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.faultproxy import FaultProxy
from datashunt import Shunt
from datashunt.batch import BatchConfig, run_batch_job
from datashunt.cli import build_parser, main
from datashunt.cli.bootstrap import run_bootstrap
from datashunt.errors import ConfigError
from datashunt.llm import RetryPolicy
from datashunt.store import CallStore
from datashunt.types import LLMRequest

pq = pytest.importorskip("pyarrow.parquet")

LABELS = ("neg", "pos")
ROWS = 150
#: answers no parser can read: a hedge, alternatives, nothing recorded, no label named
UNREADABLE = {7: "maybe pos", 19: "pos or neg", 33: "", 58: "I cannot tell"}
INVALID = 90  # an empty text: neither asked nor recorded


def _rows() -> list[tuple[str, str, str | None]]:
    """``(text, recorded answer, expected label)`` per row: the answer is ``pos`` for "good"
    texts and ``neg`` for "bad" ones, but for the unreadable and invalid rows (no label)."""
    out: list[tuple[str, str, str | None]] = []
    for i in range(ROWS):
        good = i % 3 != 0
        text = f"{'a good' if good else 'a bad'} film number {i}" if i != INVALID else ""
        answer = UNREADABLE.get(i, "pos" if good else "neg")
        out.append((text, answer, None if i in UNREADABLE or i == INVALID else answer))
    return out


def _write_csv(path: Path) -> tuple[Path, list[str | None]]:
    """The rows as a CSV (id, text, llm), and the label expected per row."""
    lines = ["id,text,llm"] + [f'r{i},"{t}","{a}"' for i, (t, a, _) in enumerate(_rows())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, [want for _, _, want in _rows()]


def _embed(texts: list[str]) -> np.ndarray:
    """A stand-in encoder that separates the two kinds of text (no model download)."""
    return np.array([[1.0, 0.0] if "good" in t else [0.0, 1.0] for t in texts])


def test_shadow_job_then_bootstrap_trains_the_first_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, want = _write_csv(tmp_path / "in.csv")
    store, out = tmp_path / "calls.sqlite", tmp_path / "out.parquet"
    argv = ["batch", "--data", str(data), "--out", str(out), "--labels", "neg, pos"]
    assert main([*argv, "--llm-column", "llm", "--store", str(store)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shadow"] and summary["rows"] == ROWS and summary["valid"] == ROWS - 1
    assert summary["store"] == str(store)
    assert summary["llm_rows"] == ROWS - 1 and summary["llm_share"] == 1.0
    assert summary["unreadable_rows"] == len(UNREADABLE) and summary["failed_rows"] == 0

    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(ROWS)]
    assert [r["label"] for r in rows] == want
    asked = [r for i, r in enumerate(rows) if i != INVALID]
    assert all(r["route"] == "llm" and r["candidates"] == list(LABELS) for r in asked)
    assert all(r["confidence"] is None and r["gate_label"] is None for r in rows)
    for i in UNREADABLE:
        assert rows[i]["source"] == "fallback" and "unreadable answer" in rows[i]["error"]
    assert rows[INVALID]["route"] == "invalid" and "empty" in rows[INVALID]["error"]
    readable = [r for i, r in enumerate(rows) if want[i] is not None]
    assert all(r["source"] == "llm" and r["error"] is None for r in readable)

    # every answer is in the store with its parsed label; bootstrap trains on those
    db = CallStore(str(store))
    recs = list(db.iter())
    db.close()
    assert len(recs) == ROWS - 1 and {r.route for r in recs} == {"llm"}
    assert sum(r.parse_ok for r in recs) == len(readable)
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        return _embed(texts)

    args = ["bootstrap", "--store", str(store), "--labels", "neg,pos", "--target", "0.9"]
    args += ["--registry", str(tmp_path / "gates")]
    boot = run_bootstrap(build_parser().parse_args(args), embed=embed, out=lambda s: None)
    assert boot["answers"] == len(readable) and boot["unparsed_skipped"] == len(UNREADABLE)
    assert sorted(seen[0]) == sorted(t for t, _, want in _rows() if want is not None)
    assert boot["registered"] is not None  # the answers were enough to certify a first gate


def test_shadow_requests_are_the_shadow_shunts_and_a_rerun_pays_nothing(tmp_path: Path) -> None:
    data, _ = _write_csv(tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    # the first answer arrives unreadable, the second call fails (not retried), the rest answer
    with FaultProxy(None, ["answer:maybe", "400"], default="answer:pos") as proxy:
        cfg = BatchConfig(
            data, out, labels=LABELS, llm_url=proxy.base_url, llm_model="m", chunk=32,
            max_concurrency=4, retry=RetryPolicy(attempts=1),
        )  # fmt: skip
        first = run_batch_job(cfg)
        paid = proxy.requests
        second = run_batch_job(cfg)  # asks the failed row again, not the unreadable one
        after_second = proxy.requests
        third = run_batch_job(cfg)  # a finished job: no call at all
        assert proxy.requests == after_second
    sent = [json.loads(b)["messages"][-1]["content"] for b in proxy.bodies]
    assert paid == ROWS - 1 and first.paid_calls == paid - 1  # answers paid: not the 400
    assert first.failed_rows == 1 and first.unreadable_rows == 1
    assert second.reasked_rows == 1 and second.failed_rows == 0 and after_second == paid + 1
    assert third.paid_calls == 0 and third.reasked_rows == 0
    assert third.resumed_chunks == -(-(ROWS - 1) // 32)
    rows = pq.read_table(out).to_pylist()
    assert sum(r["label"] is None for r in rows) == 2  # the unreadable row and the invalid one

    # each prompt is the one Shunt.shadow sends for that text: every label, no hint
    seen: list[LLMRequest] = []

    def llm(request: LLMRequest) -> str:
        seen.append(request)
        return "pos"

    shunt = Shunt.shadow(list(LABELS), llm=llm)
    shunt.run_batch([t for t, _, _ in _rows() if t])
    assert sorted(sent[:paid]) == sorted(r.prompt for r in seen)
    assert all(r.candidates == LABELS for r in seen)


def test_gate_or_labels_exactly_one_and_no_budget_without_a_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = _write_csv(tmp_path / "in.csv")
    base = ["batch", "--data", str(data), "--out", str(tmp_path / "o.parquet")]
    base += ["--llm-column", "llm"]
    assert main(base) == 2
    assert "needs --gate DIR" in capsys.readouterr().err
    assert main([*base, "--gate", str(tmp_path), "--labels", "neg,pos"]) == 2
    assert "--gate or --labels, not both" in capsys.readouterr().err
    for flag, value in (("--budget", "0.3"), ("--delta", "0.9")):
        assert main([*base, "--labels", "neg,pos", flag, value]) == 2
        err = capsys.readouterr().err
        assert f"Drop {flag}" in err and "has no gate" in err
    assert main([*base, "--labels", "pos"]) == 2
    assert "at least two labels" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet.work").exists()  # refused before any work
    with pytest.raises(ConfigError, match="not both"):
        BatchConfig(data, tmp_path / "o.parquet", tmp_path, labels=LABELS, llm_column="llm")


def test_shadow_job_on_the_ray_engine_runs_its_llm_pass_here(tmp_path: Path) -> None:
    data, want = _write_csv(tmp_path / "in.csv")
    outs = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        run_batch_job(BatchConfig(data, out, labels=LABELS, llm_column="llm", engine=engine))
        outs.append(pq.read_table(out))
    assert outs[0].equals(outs[1])
    assert outs[1].column("label").to_pylist() == want
