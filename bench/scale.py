"""Issue 15's evidence: `datashunt batch` at scale (``make bench-scale``).

1. Gate only (pass 1), ``--rows`` rows (amazon-mds and sst2 test reviews repeated, each with
   its own row id): rows per second and peak memory (the process and every process under it,
   Ray's included) for the local engine on torch fp32, torch int8 and ONNX Runtime, and for Ray
   with 1 and 2 workers; the accuracy of the three backends against the gold labels of the
   distinct reviews (ONNX must stay within 0.3 points of fp32).
2. End to end, ``--e2e-rows`` rows, budget 0.3, against a loopback OpenAI-compatible server
   answering every call in 200 ms: wall time, the LLM share against the budget, calls made.
3. Kill and resume: the same job as a ``datashunt batch`` subprocess, SIGKILLed after a third
   of its calls and started again: calls before and after, prompts asked twice, and whether the
   output equals the uninterrupted run's.

Figures go to ``bench/results/scale.json``. The machine is shared (2 cores, other jobs): the
ratios measured side by side in one run mean more than the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS as RESULTS_DIR
from bench.common import command, machine, timed

RESULTS = RESULTS_DIR / "scale.json"
WORK = Path(".cache/scale")


def _gate_dir(given: str | None) -> Path:
    from bench.gate_speed import _resolve_gate

    return _resolve_gate(given, 2000)


def _base_rows(base_data: str | None) -> list[tuple[str, str]]:
    """(text, gold label) of amazon-mds test then sst2 test, or of ``base_data`` (a Parquet
    file with ``text`` and ``gold`` columns, for a machine without ``../shared/data``)."""
    if base_data:
        import pyarrow.parquet as pq

        t = pq.read_table(base_data)
        return list(zip(t.column("text").to_pylist(), t.column("gold").to_pylist(), strict=True))
    from datashunt import read_dataset

    return [
        (e.text, e.label)
        for name in ("amazon-mds", "sst2")
        for e in read_dataset(name, split="test").examples
    ]


def _make_data(
    rows: int, path: Path, base_data: str | None = None, unique: bool = False
) -> tuple[Path, list[int]]:
    """The test splits repeated to ``rows`` rows with a row id; the gold label of each row.
    ``unique``: each text ends with its row id, so that no two prompts are the same (every LLM
    call is paid, none answered from the cache)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = _base_rows(base_data)
    labels = ("negative", "positive")
    take = [base[i % len(base)] for i in range(rows)]
    gold = [labels.index(g) for _, g in take]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "id": [f"row-{i:07d}" for i in range(rows)],
                "text": [f"{t} (row {i})" if unique else t for i, (t, _) in enumerate(take)],
                "gold": [g for _, g in take],
            }
        )
        pq.write_table(table, path)
    return path, gold


def gate_only(
    gate: Path,
    data: Path,
    gold: list[int],
    workers: list[int],
    *,
    backends: tuple[str, ...] = ("torch", "int8", "onnx"),
    cpu_rows: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Pass 1 alone: local (torch, int8, onnx; on the first ``cpu_rows`` rows), the torch gate
    on ``device`` (a GPU, every row), and Ray (1, 2, ... workers, torch and onnx)."""
    from datashunt.batch import read_input
    from datashunt.batch.score import prob_columns, score_local, score_ray

    table = read_input(data, "text", "id")
    n = table.num_rows
    distinct = min(n, len(set(table.column("text").to_pylist())))
    out: dict[str, Any] = {"rows": n, "runs": {}}
    accuracy: dict[str, float] = {}

    def record(name: str, scored: Any, wall: float, peak: float) -> None:
        probs = np.column_stack(
            [scored.sort_by("_row").column(c).to_numpy() for c in prob_columns(2)]
        )
        k = min(distinct, len(probs))
        acc = float(np.mean(np.argmax(probs[:k], 1) == np.asarray(gold[:k])))
        out["runs"][name] = {
            "rows": len(probs),
            "wall_s": round(wall, 2),
            "rows_per_s": round(len(probs) / wall, 1),
            "peak_rss_mb": peak,
            "accuracy": round(100 * acc, 2),
        }
        accuracy[name] = acc
        print(name, out["runs"][name], flush=True)

    cpu_table = table.slice(0, cpu_rows) if cpu_rows else table
    for backend in backends:
        if backend == "onnx":  # the one-off export is not part of the rate
            from datashunt.gates import HFGate

            HFGate(gate, backend="onnx")
        scored, wall, peak = timed(partial(score_local, cpu_table, gate, backend, 256))
        record(f"local-{backend}", scored, wall, peak)
    if device:
        from datashunt.gates import HFGate

        HFGate(gate, device=device).predict_proba(["warm-up"] * 8)  # CUDA context, kernels
        scored, wall, peak = timed(lambda: score_local(table, gate, "torch", 4096, device))
        record(f"local-{device}", scored, wall, peak)

    try:
        import ray
    except ImportError:
        workers = []
        out["ray"] = "not installed on this machine: no Ray runs"
    for w in workers:
        for backend in ("torch", "onnx"):
            ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
            tmp = WORK / f"ray-{w}-{backend}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                scored, wall, peak = timed(partial(score_ray, table, gate, backend, 256, w, tmp))
            finally:
                ray.shutdown()
            record(f"ray-{w}w-{backend}", scored, wall, peak)
    out["accuracy_rows"] = min(distinct, cpu_table.num_rows)
    if "local-torch" in accuracy:  # the same first rows in every local run
        base = accuracy["local-torch"]
        for name in ("onnx", "int8"):
            if f"local-{name}" in accuracy:
                out[f"{name}_minus_fp32_points"] = round(
                    100 * (accuracy[f"local-{name}"] - base), 2
                )
        if device:
            out["gpu_minus_cpu_fp32_points"] = round(100 * (accuracy[f"local-{device}"] - base), 2)
    return out


def backends_one_thread(gate: Path, data: Path, gold: list[int], n: int) -> dict[str, Any]:
    """torch fp32, torch int8 and ONNX Runtime side by side on one thread each, interleaved
    (two rounds, the faster kept), so that load from other jobs hits all three alike."""
    import torch

    from datashunt.batch import read_input
    from datashunt.gates import HFGate
    from datashunt.gates.onnx import OnnxLogits

    torch.set_num_threads(1)
    texts = read_input(data, "text", "id").column("text").to_pylist()[:n]
    gates = {
        "torch": HFGate(gate),
        "int8": HFGate(gate, quantize="int8"),
        "onnx": HFGate(gate, backend="onnx"),
    }
    gates["onnx"]._onnx = OnnxLogits(gates["onnx"]._onnx.path, threads=1)
    best: dict[str, float] = {}
    acc: dict[str, float] = {}
    for _ in range(2):
        for name, g in gates.items():
            t0 = time.perf_counter()
            probs = g.predict_proba(texts)
            wall = time.perf_counter() - t0
            best[name] = min(best.get(name, wall), wall)
            acc[name] = float(np.mean(np.argmax(probs, 1) == np.asarray(gold[:n])))
    out = {
        name: {"rows_per_s": round(n / best[name], 2), "accuracy": round(100 * acc[name], 2)}
        for name in gates
    }
    out["rows"] = n  # type: ignore[assignment]
    print("one thread", out, flush=True)
    return out


def end_to_end(gate: Path, data: Path, backend: str, device: str = "cpu") -> dict[str, Any]:
    """The whole job against a loopback server answering in 200 ms, then kill and resume."""
    import pyarrow.parquet as pq

    from bench.faultproxy import FaultProxy
    from datashunt.batch import BatchConfig, run_batch_job

    out_file = WORK / "e2e" / "out.parquet"
    shutil.rmtree(out_file.parent, ignore_errors=True)
    with FaultProxy(None, default="answer:positive", delay=0.2) as proxy:
        cfg = BatchConfig(
            data,
            out_file,
            gate,
            llm_url=proxy.base_url,
            llm_model="loopback-200ms",
            budget=0.3,
            backend=backend,
            device=device,
            max_concurrency=16,
        )
        summary, wall, peak = timed(lambda: run_batch_job(cfg))
        calls = proxy.requests
    e2e = {
        "rows": summary.rows,
        "budget": 0.3,
        "llm_share": summary.llm_share,
        "llm_rows": summary.llm_rows,
        "llm_rows_minus_budget": summary.llm_rows - round(0.3 * summary.valid),
        "calls_made": calls,
        "cache_hits": summary.cache_hits,
        "wall_s": round(wall, 2),
        "gate_s": round(summary.gate_s, 2),
        "llm_s": round(summary.llm_s, 2),
        "llm_calls_per_s": round(calls / summary.llm_s, 1) if summary.llm_s else None,
        "peak_rss_mb": peak,
        "max_concurrency": 16,
        "server_latency_s": 0.2,
    }
    print("e2e", e2e, flush=True)

    # kill and resume, pass 1 reused (copied) so that the kill lands in pass 2
    killed = WORK / "resume" / "out.parquet"
    work = killed.with_name(killed.name + ".work")
    shutil.rmtree(killed.parent, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(cfg.work / "gate", work / "gate")
    shutil.copy(cfg.work / "job.json", work / "job.json")
    with FaultProxy(None, default="answer:positive", delay=0.2) as proxy:
        argv = [
            sys.executable, "-m", "datashunt", "batch", "--data", str(data), "--out",
            str(killed), "--gate", str(gate), "--llm-url", proxy.base_url, "--llm-model",
            "loopback-200ms", "--budget", "0.3", "--backend", backend, "--device", device,
            "--max-concurrency", "16",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proxy.requests < summary.llm_rows // 3 and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is not None:
            raise RuntimeError("the job ended before a third of its calls: nothing to kill")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = proxy.requests
        paid_before = _cached_prompts(work / "calls.sqlite")
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        resumed = json.loads(done.stdout)
        prompts = [json.loads(b)["messages"][-1]["content"] for b in proxy.bodies]
    asked_before = set(prompts[:before])
    resume = {
        "killed_after_calls": before,
        "calls_after_restart": len(prompts) - before,
        "calls_total": len(prompts),
        "calls_uninterrupted": calls,
        "answers_kept_at_kill": len(paid_before),
        # the invariant: an answer that was paid for and kept is never asked again
        "kept_answers_asked_again": len(paid_before & set(prompts[before:])),
        # calls in flight at the kill (their answers never arrived): asked again, at most one
        # per concurrent slot (16)
        "in_flight_at_kill_asked_again": len((asked_before - paid_before) & set(prompts[before:])),
        "resumed_chunks": resumed["resumed_chunks"],
        "output_equal_to_uninterrupted": pq.read_table(killed).equals(pq.read_table(out_file)),
    }
    print("resume", resume, flush=True)
    return {"end_to_end": e2e, "kill_and_resume": resume}


def _cached_prompts(db: Path) -> set[str]:
    """The prompts whose answers the job kept in its LLM cache."""
    from datashunt.llm import LLMCache

    if not db.is_file():
        return set()
    return {str(row["prompt"]) for row in LLMCache(db).rows()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--rows", type=int, default=100_000, help="rows through the gate alone")
    p.add_argument("--e2e-rows", type=int, default=20_000, help="rows end to end")
    p.add_argument("--gate", help="gate dir (default: the bench gate, trained if missing)")
    p.add_argument("--workers", default="1,2", help="Ray worker counts")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--base-data", help="Parquet of text,gold to repeat (default: the test splits)")
    p.add_argument("--backends", default="torch,int8,onnx", help="local CPU backends to time")
    p.add_argument("--cpu-rows", type=int, help="rows for the local CPU runs (default: --rows)")
    p.add_argument("--device", help="also time the torch gate on this GPU (e.g. cuda), all rows")
    p.add_argument("--note", help="the machine note written with the figures")
    p.add_argument(
        "--backends-only",
        type=int,
        metavar="N",
        help="only the one-thread torch/int8/ONNX comparison on N rows, added to --out",
    )
    args = p.parse_args(argv)
    gate = _gate_dir(args.gate)
    if args.backends_only:
        data, gold = _make_data(args.backends_only, WORK / f"gate-{args.backends_only}.parquet")
        path = Path(args.out)
        merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        merged["backends_one_thread"] = backends_one_thread(gate, data, gold, args.backends_only)
        path.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
        return 0
    workers = [int(w) for w in args.workers.split(",") if w]
    data, gold = _make_data(args.rows, WORK / f"gate-{args.rows}.parquet", args.base_data)
    e2e_data, _ = _make_data(
        args.e2e_rows, WORK / f"e2e-{args.e2e_rows}-unique.parquet", args.base_data, unique=True
    )
    backends = tuple(b for b in args.backends.split(",") if b)
    t0 = time.time()
    report: dict[str, Any] = {
        "command": command("bench.scale", argv),
        "gate": str(gate),
        "machine": machine(),
        "note": args.note
        or "shared machine: 2 CPU cores, other jobs running; compare ratios measured "
        "side by side in one run, not absolute rates across runs",
        "gate_only": gate_only(
            gate, data, gold, workers, backends=backends, cpu_rows=args.cpu_rows, device=args.device
        ),
    }
    runs = report["gate_only"]["runs"]
    if args.device:
        backend, device = "torch", args.device
    else:
        measured = [b for b in ("torch", "onnx") if f"local-{b}" in runs]
        backend = max(measured, key=lambda b: runs[f"local-{b}"]["rows_per_s"])
        device = "cpu"
    report.update(end_to_end(gate, e2e_data, backend, device))
    report["e2e_backend"] = backend if device == "cpu" else f"{backend} on {device}"
    report["bench_wall_s"] = round(time.time() - t0, 1)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
