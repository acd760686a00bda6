"""Load benchmark: many concurrent ``ainvoke`` calls through ``DataShuntRunnable`` with the real
local LLM, recorded in SQLite and then in PostgreSQL.

For each store it reports throughput, p50/p99 latency (all inputs, and per route), the records
written against the LLM calls made (each must have its record, none twice), and peak memory;
it fails (exit 1) on a lost record, a count that does not add up, or a run that does not finish
within ``--timeout`` (a deadlock). Figures go to ``bench/results/load.json``.

Run: ``make bench`` (or ``python -m bench.load --n 1000``). The local LLM answers a few
requests a second on 2 cores, so 1,000 inputs with 30 % sent to it take a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS as RESULTS_DIR
from bench.common import command, machine, peak_rss_mb
from datashunt import BaseGate, CallStore, Gate, ShuntPolicy, load_gate
from datashunt.gates import FloatArray
from datashunt.llm import RetryPolicy

RESULTS = RESULTS_DIR / "load.json"
LABELS = ("negative", "positive")
_POSITIVE = ["great", "excellent", "love", "perfect", "wonderful"]
_NEGATIVE = ["awful", "terrible", "broken", "waste", "worst"]
_NEUTRAL = [
    "It arrived on a Tuesday in a brown box.",
    "I bought it for my sister's kitchen.",
    "The manual is twelve pages long.",
    "It is about the size of a shoebox.",
    "We used it twice during the holidays.",
    "The colour is a darker grey than in the photos.",
]


class KeywordGate(BaseGate):
    """A stand-in gate: confident when a review names a sentiment word, unsure otherwise."""

    def __init__(self) -> None:
        super().__init__(LABELS)

    def _logits(self, texts: list[str]) -> FloatArray:
        out = np.zeros((len(texts), 2))
        for i, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            out[i, 0] = 4.0 * sum(w in _NEGATIVE for w in words)
            out[i, 1] = 4.0 * sum(w in _POSITIVE for w in words)
        return out


def synthetic_reviews(n: int, llm_share: float, seed: int = 0) -> list[str]:
    """``n`` short reviews; about ``llm_share`` of them name no sentiment word."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    out = []
    for i in range(n):
        base = rng.choice(_NEUTRAL)
        if rng.random() < llm_share:
            out.append(f"Review {i}: {base}")
        else:
            word = rng.choice(_POSITIVE + _NEGATIVE)
            out.append(f"Review {i}: {base} The blender is {word}.")
    return out


def _gate_and_texts(args: argparse.Namespace) -> tuple[Gate, ShuntPolicy, list[str]]:
    if args.gate is None:
        return KeywordGate(), ShuntPolicy(labels=LABELS), synthetic_reviews(args.n, args.llm_share)
    gate = load_gate(args.gate)
    try:
        from datashunt import read_dataset

        texts = read_dataset("amazon-mds", split="test", limit=args.n).texts
    except Exception:  # no data folder here: synthetic reviews still exercise the gate
        texts = synthetic_reviews(args.n, args.llm_share)
    texts = (texts * (args.n // max(1, len(texts)) + 1))[: args.n]
    # δ at the quantile that sends about --llm-share of these inputs to the LLM
    conf = np.asarray(gate.predict_proba(texts)).max(axis=1)
    threshold = float(np.quantile(conf, args.llm_share))
    policy = ShuntPolicy(labels=tuple(gate.labels), threshold=min(1.0, max(0.0, threshold)))
    return gate, policy, texts


class _CallCounter:
    """Counts chat-model calls as LangChain starts them (each retry is a call)."""

    def __init__(self) -> None:
        from langchain_core.callbacks import BaseCallbackHandler

        counter = self

        class Handler(BaseCallbackHandler):
            def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
                with counter.lock:
                    counter.calls += 1

        self.calls = 0
        self.lock = threading.Lock()
        self.handler = Handler()


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    arr = np.asarray(values)
    return {
        "p50_s": round(float(np.percentile(arr, 50)), 4),
        "p99_s": round(float(np.percentile(arr, 99)), 4),
        "max_s": round(float(arr.max()), 4),
    }


async def run_load(
    store: CallStore,
    gate: Gate,
    policy: ShuntPolicy,
    texts: list[str],
    *,
    base_url: str,
    model: str,
    timeout: float,
    trace: bool,
) -> dict[str, Any]:
    """``len(texts)`` concurrent ``ainvoke`` calls; the figures of the run."""
    from langchain_openai import ChatOpenAI

    from langchain_datashunt import DataShuntRunnable

    counter = _CallCounter()
    llm = ChatOpenAI(
        base_url=base_url,
        api_key="local",  # type: ignore[arg-type]
        model=model,
        temperature=0,
        max_completion_tokens=5,
        logprobs=True,
        top_logprobs=5,
        max_retries=0,  # the shunt retries, and counts each attempt
        timeout=timeout,
        callbacks=[counter.handler],
    )
    runnable = DataShuntRunnable.from_gate(
        gate=gate, policy=policy, llm=llm, store=store, retry=RetryPolicy(attempts=3)
    )
    latencies: list[float] = [0.0] * len(texts)

    async def one(i: int, text: str) -> Any:
        t0 = time.perf_counter()
        try:
            return await runnable.ainvoke(text)
        finally:
            latencies[i] = time.perf_counter() - t0

    rss_before = peak_rss_mb()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    deadlock = False
    try:
        outs = await asyncio.wait_for(
            asyncio.gather(*(one(i, t) for i, t in enumerate(texts)), return_exceptions=True),
            timeout,
        )
    except asyncio.TimeoutError:
        deadlock, outs = True, []
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    store.flush_spill()
    errors = [o for o in outs if isinstance(o, BaseException)]
    ok = [o for o in outs if not isinstance(o, BaseException)]
    llm_outs = [o for o in ok if o.route == "llm"]
    idx_llm = [
        i for i, o in enumerate(outs) if not isinstance(o, BaseException) and o.route == "llm"
    ]
    idx_small = [
        i for i, o in enumerate(outs) if not isinstance(o, BaseException) and o.route == "small"
    ]
    records = store.count()
    records_llm = store.count(route="llm")
    attempts = sum(o.attempts or 0 for o in llm_outs)
    figures: dict[str, Any] = {
        "inputs": len(texts),
        "finished": not deadlock,
        "errors": len(errors),
        "llm_routed": len(llm_outs),
        "llm_share": round(len(llm_outs) / max(1, len(texts)), 3),
        "llm_calls_made": counter.calls,
        "llm_attempts_recorded": attempts,
        "fallbacks": sum(o.source == "fallback" for o in ok),
        "llm_errors": sum(o.error is not None for o in llm_outs),
        "llm_error_samples": sorted({o.error for o in llm_outs if o.error})[:3],
        "records_written": records,
        "records_llm": records_llm,
        "spill_pending": store.pending,
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(texts) / wall, 2),
        "llm_throughput_per_s": round(len(llm_outs) / wall, 2),
        "latency_all": _percentiles(latencies),
        "latency_llm_route": _percentiles([latencies[i] for i in idx_llm]),
        "latency_small_route": _percentiles([latencies[i] for i in idx_small]),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "tracemalloc_peak_mb": round(traced, 1) if traced is not None else None,
    }
    problems = []
    if deadlock:
        problems.append(f"did not finish within {timeout:g}s")
    if errors:
        problems.append(f"{len(errors)} inputs raised: {errors[0]!r}")
    if records != len(texts):
        problems.append(f"{records} records for {len(texts)} inputs")
    if records_llm != len(llm_outs):
        problems.append(f"{records_llm} LLM records for {len(llm_outs)} LLM-routed inputs")
    if attempts != counter.calls:
        problems.append(f"{attempts} attempts recorded for {counter.calls} LLM calls made")
    figures["problems"] = problems
    return figures


def _print(name: str, f: dict[str, Any]) -> None:
    la, ll, ls = f["latency_all"], f["latency_llm_route"], f["latency_small_route"]
    print(
        f"[{name}] {f['inputs']} inputs in {f['wall_s']}s: {f['throughput_per_s']}/s "
        f"({f['llm_routed']} to the LLM = {f['llm_share']:.0%}, {f['llm_calls_made']} calls, "
        f"{f['fallbacks']} fallbacks, {f['llm_errors']} after errors)\n"
        f"  latency p50/p99: all {la['p50_s']}/{la['p99_s']}s, LLM route "
        f"{ll['p50_s']}/{ll['p99_s']}s, gate route {ls['p50_s']}/{ls['p99_s']}s\n"
        f"  records {f['records_written']} (LLM {f['records_llm']}), spill pending "
        f"{f['spill_pending']}, peak RSS {f['peak_rss_mb']} MB"
        + (f", tracemalloc peak {f['tracemalloc_peak_mb']} MB" if f["tracemalloc_peak_mb"] else "")
        + ("\n  PROBLEMS: " + "; ".join(f["problems"]) if f["problems"] else "\n  OK"),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load benchmark; returns 0 when every input got its record and nothing hung."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=1000, help="concurrent ainvoke calls (1000)")
    parser.add_argument("--llm-share", type=float, default=0.3, help="share sent to the LLM (0.3)")
    parser.add_argument("--gate", help="a trained gate directory (default: a keyword gate)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--base-url", help="a running OpenAI-compatible server (default: start one)"
    )
    parser.add_argument("--model", default="local", help="model name at --base-url")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before a run counts as hung"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON figures ({RESULTS})")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"sqlite", "postgres"})
    if unknown or not backends:
        parser.error(f"--backends takes sqlite and/or postgres, got {args.backends!r}")
    gate, policy, texts = _gate_and_texts(args)

    from contextlib import ExitStack

    from datashunt.llm.server import LLMServer

    report: dict[str, Any] = {
        "command": command("bench.load", argv),
        "gate": args.gate or "keyword (built in)",
        "machine": machine(),
        "runs": {},
    }
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="datashunt-load-") as tmp:
        if args.base_url:
            base_url, model = args.base_url, args.model
        else:
            server = stack.enter_context(LLMServer())
            base_url, model = server.base_url, server.model_name
        report["llm"] = {"base_url": base_url, "model": model}
        stores: dict[str, CallStore] = {}
        for backend in backends:
            if backend == "sqlite":
                url: str | Path = Path(tmp) / "load.sqlite"
            else:
                from bench.pgcluster import PostgresCluster

                url = stack.enter_context(PostgresCluster()).create_database("load")
            stores[backend] = CallStore(url, spill_path=Path(tmp) / f"{backend}.spill.jsonl")
            stack.callback(stores[backend].close)

        async def run_all() -> None:
            # One event loop for every run: langchain-openai caches its async HTTP client per
            # process, and a client from a closed loop fails with "Event loop is closed".
            for backend, store in stores.items():
                figures = await run_load(
                    store, gate, policy, texts,
                    base_url=base_url, model=model, timeout=args.timeout, trace=args.tracemalloc,
                )  # fmt: skip
                report["runs"][backend] = figures
                _print(backend, figures)

        asyncio.run(run_all())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {args.out}")
    return 1 if any(r["problems"] for r in report["runs"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
