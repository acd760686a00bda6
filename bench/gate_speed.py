"""Gate speed benchmark (issue 6): the gate's forward pass, the shunt's decision and the runnable.

Side by side, in one run, on the same inputs (``--n`` amazon-mds test reviews):

- the raw batched forward pass of the gate's HF model (tokenise + model, the gate's own
  length-sorted buckets) against ``gate.predict_proba`` and ``Shunt.decide``: the shunt should
  add at most 5 % over the raw pass;
- a naive one-by-one loop and unsorted fixed batches against length-sorted buckets;
- dynamic int8 quantisation of the Linear layers: speed-up over fp32 and accuracy against the
  gold labels on the same inputs;
- single-input latency (p50/p95) of ``Shunt.decide([text])``;
- ``DataShuntRunnable.abatch`` over ``--llm-n`` inputs against sending all of them to the local
  LLM: wall time and tokens (skip with ``--no-llm``);
- peak memory of the whole process (``ru_maxrss``).

Each variant is warmed up once, then timed ``--repeats`` times, the variants interleaved within
each repeat so that a burst of load on a shared machine hits all of them alike; the median is
reported. Figures go to ``bench/results/gate_speed.json`` and a markdown table is printed.

Run: ``make bench-gate`` (or ``python -m bench.gate_speed --gate DIR``). MiniLM reads about
7 reviews a second on one contended core, so the defaults (128 inputs, 3 repeats, 1 and 2
threads, 40 inputs through the LLM) take about 20 minutes there; ``--n 512`` about four times
the gate part. Without ``--gate`` the gate at ``.cache/gates/amazon-mds-minilm`` is used, or
one is fine-tuned (1 epoch, 128 tokens, 2,000 training reviews) into
``.cache/gates/bench-gate-speed`` on a fresh machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "gate_speed.json"
DEFAULT_GATE = Path(".cache/gates/amazon-mds-minilm")
TRAINED_GATE = Path(".cache/gates/bench-gate-speed")
MACHINE_NOTE = (
    "shared machine: 2 CPU cores, other jobs running; compare ratios measured side by side "
    "in one run, not absolute times across runs"
)


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident size of this process so far
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _train_gate(out: Path, n: int, seed: int = 0) -> Path:
    """Fine-tune a gate on a fresh machine: 1 epoch, 128 tokens, ``n`` training reviews."""
    from datashunt import Budget, calibrate, load_gate, read_dataset, train_gate
    from datashunt.data import Dataset
    from datashunt.training import TrainConfig

    train = read_dataset("amazon-mds", split="train")
    rng = random.Random(seed)  # noqa: S311 - a data subset, not a secret
    subset = Dataset(tuple(rng.sample(train.examples, min(n, len(train)))), train.labels)
    print(f"no gate given: fine-tuning one on {len(subset)} reviews into {out} (minutes)")
    train_gate(subset, out, config=TrainConfig(epochs=1, max_length=128), progress=False)
    # a calibrated δ (30 % budget on 200 dev reviews), so the runnable part routes as in use
    dev = read_dataset("amazon-mds", split="dev", limit=200)
    calibrate(load_gate(out), dev, Budget(max_llm_rate=0.3)).policy.save(out)
    return out


def _resolve_gate(gate: str | None, train_n: int) -> Path:
    if gate is not None:
        return Path(gate)
    if DEFAULT_GATE.is_dir():
        return DEFAULT_GATE
    trained = TRAINED_GATE.with_name(f"{TRAINED_GATE.name}-{train_n}")
    if (trained / "config.json").is_file():
        return trained
    return _train_gate(trained, train_n)


def _read_inputs(data: str, n: int) -> Any:
    from datashunt import read_dataset

    if Path(data).suffix in (".csv", ".tsv", ".jsonl"):
        ds = read_dataset(data, limit=n)
    else:
        ds = read_dataset(data, split="test", limit=n)
    if len(ds) < n:
        print(f"only {len(ds)} inputs in {data}, asked for {n}")
    return ds


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """One warm-up of each variant, then ``repeats`` rounds with every variant timed once."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_time(fn))
    return times


def _fixed_buckets(texts: list[str], size: int, *, sort: bool) -> list[np.ndarray]:
    """Batches of ``size`` inputs, length-sorted or in input order (the naive batching)."""
    order = np.argsort([len(t) for t in texts], kind="stable") if sort else np.arange(len(texts))
    return [order[i : i + size] for i in range(0, len(texts), size)]


def _batched_logits(
    gate: Any, model: Any, texts: list[str], buckets: list[np.ndarray] | None = None
) -> np.ndarray:
    """Tokenise + forward per bucket (default the gate's own token-budget buckets); no softmax,
    no validation: the raw cost of the model."""
    import torch

    out = np.empty((len(texts), len(gate.labels)), dtype=np.float64)
    with torch.inference_mode():
        for idx in buckets if buckets is not None else gate.buckets(texts):
            enc = gate.encode([texts[i] for i in idx])
            out[idx] = model(**enc).logits.float().numpy()
    return out


def _one_by_one(gate: Any, model: Any, texts: list[str]) -> None:
    import torch

    with torch.inference_mode():
        for t in texts:
            model(**gate.encode([t]))


class _FixedGate:
    """A gate that returns precomputed probabilities: times everything around the model."""

    def __init__(self, labels: Sequence[str], probs: np.ndarray) -> None:
        self.labels = tuple(labels)
        self.probs = probs

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.probs[: len(texts)]


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 4)


def int8_accuracy(gate: Any, qmodel: Any, texts: list[str], gold: list[int]) -> dict[str, Any]:
    """fp32 and int8 accuracy against the gold labels, and how often they agree."""
    y = np.asarray(gold)
    fp32_pred = _batched_logits(gate, gate.model, texts).argmax(axis=1)
    int8_pred = _batched_logits(gate, qmodel, texts).argmax(axis=1)
    acc_fp32 = float((fp32_pred == y).mean())
    acc_int8 = float((int8_pred == y).mean())
    return {
        "n": len(texts),
        "fp32": round(acc_fp32, 4),
        "int8": round(acc_int8, 4),
        "int8_loss_points": round(100 * (acc_fp32 - acc_int8), 2),
        "int8_agreement": round(float((fp32_pred == int8_pred).mean()), 4),
    }


def bench_gate(
    gate: Any,
    policy: Any,
    texts: list[str],
    gold: list[int],
    *,
    threads: int,
    repeats: int,
    acc_texts: list[str] | None = None,
    acc_gold: list[int] | None = None,
) -> dict[str, Any]:
    """Every gate-side figure at one ``torch.set_num_threads`` setting; int8 accuracy on
    ``acc_texts`` (a larger sample: one review in 128 is 0.78 points) when given."""
    import torch

    from datashunt import Shunt

    torch.set_num_threads(threads)
    shunt = Shunt(gate, policy)
    from datashunt.gates.hf import quantize_int8

    # the library's own int8 path (HFGate(quantize="int8")): dynamic, weights per channel
    qmodel = quantize_int8(gate.model)
    fixed32 = _fixed_buckets(texts, 32, sort=True)
    unsorted32 = _fixed_buckets(texts, 32, sort=False)
    variants: dict[str, Callable[[], Any]] = {
        "raw_forward": lambda: _batched_logits(gate, gate.model, texts),
        "predict_proba": lambda: gate.predict_proba(texts),
        "shunt_decide": lambda: shunt.decide(texts),
        "sorted_batch32": lambda: _batched_logits(gate, gate.model, texts, fixed32),
        "unsorted_batch32": lambda: _batched_logits(gate, gate.model, texts, unsorted32),
        "one_by_one": lambda: _one_by_one(gate, gate.model, texts),
        "int8_forward": lambda: _batched_logits(gate, qmodel, texts),
    }
    times = _interleaved(variants, repeats)
    med = {name: _median(ts) for name, ts in times.items()}
    raw = med["raw_forward"]

    accuracy = int8_accuracy(gate, qmodel, acc_texts or texts, acc_gold or gold)
    acc_fp32, acc_int8 = accuracy["fp32"], accuracy["int8"]

    # the decision's own cost with the model taken out: the same probabilities, precomputed
    probs = gate.predict_proba(texts)
    stub = Shunt(_FixedGate(gate.labels, probs), policy)
    overhead = _median([_time(lambda: stub.decide(texts)) for _ in range(max(3, repeats))])

    # single-input latency of the decision, each call timed on its own after the warm-up above
    sample = texts[: min(len(texts), 100)]
    lat = [_time(lambda t=t: shunt.decide([t])) for t in sample]  # type: ignore[misc]
    return {
        "threads": threads,
        "median_s": med,
        "all_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "inputs_per_s": {name: round(len(texts) / s, 1) for name, s in med.items() if s > 0},
        "decide_overhead_without_model_s": overhead,
        "ratios": {
            "decide_overhead_over_raw": round(overhead / raw, 5),
            "predict_proba_over_raw": round(med["predict_proba"] / raw, 3),
            "decide_over_raw": round(med["shunt_decide"] / raw, 3),
            "one_by_one_over_bucketed": round(med["one_by_one"] / raw, 3),
            "sorted_batch32_over_bucketed": round(med["sorted_batch32"] / raw, 3),
            "unsorted_batch32_over_bucketed": round(med["unsorted_batch32"] / raw, 3),
            "fp32_over_int8": round(raw / med["int8_forward"], 3),
        },
        "accuracy": accuracy,
        "single_latency_s": {
            "n": len(lat),
            "p50": round(float(np.percentile(lat, 50)), 5),
            "p95": round(float(np.percentile(lat, 95)), 5),
        },
        "targets": {
            "decide_within_5pct": med["shunt_decide"] <= 1.05 * raw,
            "batching_1_5x": med["one_by_one"] >= 1.5 * raw,
            "int8_1_8x_and_0_5pt": raw >= 1.8 * med["int8_forward"]
            and 100 * (acc_fp32 - acc_int8) <= 0.5,
        },
    }


async def _abatch_usage(runnable: Any, texts: list[str], gold: list[str]) -> dict[str, Any]:
    from langchain_core.callbacks import get_usage_metadata_callback

    with get_usage_metadata_callback() as cb:
        t0 = time.perf_counter()
        outs = await runnable.abatch(texts, config={"max_concurrency": 8})
        wall = time.perf_counter() - t0
    usage = cb.usage_metadata
    tokens = {
        key: sum(int(u.get(key, 0)) for u in usage.values())
        for key in ("input_tokens", "output_tokens", "total_tokens")
    }
    return {
        "wall_s": round(wall, 3),
        "llm_calls": sum(o.route == "llm" for o in outs),
        "fallbacks": sum(o.source == "fallback" for o in outs),
        "accuracy": round(
            sum(o.label == g for o, g in zip(outs, gold, strict=True)) / len(gold), 3
        ),
        **tokens,
    }


def bench_runnable(gate: Any, policy: Any, texts: list[str], gold: list[int]) -> dict[str, Any]:
    """``DataShuntRunnable.abatch`` with the calibrated policy against every input to the LLM."""
    from langchain_openai import ChatOpenAI

    from datashunt.llm.server import LLMServer
    from langchain_datashunt import DataShuntRunnable

    with LLMServer() as server:
        llm = ChatOpenAI(
            base_url=server.base_url,
            api_key="local",  # type: ignore[arg-type]
            model=server.model_name,
            max_completion_tokens=8,
            temperature=0,
            max_retries=0,
        )
        shunted = DataShuntRunnable(gate=gate, llm=llm, policy=policy, prompt_mode="soft")
        # threshold 1.0: no input is confident enough, so every one is sent to the LLM
        everything = DataShuntRunnable(
            gate=gate, llm=llm, policy=policy.with_(threshold=1.0), prompt_mode="none"
        )

        async def both() -> dict[str, Any]:
            # one event loop for both: langchain-openai caches its async client per process
            await everything.abatch(texts[:2])  # warm the server and the client
            names = [gate.labels[g] for g in gold]
            return {
                "all_to_llm": await _abatch_usage(everything, texts, names),
                "datashunt": await _abatch_usage(shunted, texts, names),
            }

        runs = asyncio.run(both())
        model = server.model_name
    a, s = runs["all_to_llm"], runs["datashunt"]
    return {
        "n": len(texts),
        "llm": model,
        "threshold": policy.threshold,
        **runs,
        "ratios": {
            "wall_all_over_datashunt": round(a["wall_s"] / s["wall_s"], 3) if s["wall_s"] else None,
            "tokens_saved_share": round(1 - s["total_tokens"] / a["total_tokens"], 3)
            if a["total_tokens"]
            else None,
        },
    }


def gate_table(report: dict[str, Any]) -> str:
    """The gate and runnable figures as markdown."""
    g = report["gate"]
    lines: list[str] = []
    names = (
        "raw_forward",
        "predict_proba",
        "shunt_decide",
        "sorted_batch32",
        "unsorted_batch32",
        "one_by_one",
        "int8_forward",
    )
    ratio_names = (
        "predict_proba_over_raw",
        "decide_over_raw",
        "one_by_one_over_bucketed",
        "sorted_batch32_over_bucketed",
        "unsorted_batch32_over_bucketed",
        "fp32_over_int8",
    )
    for data, block in g["inputs"].items():
        runs = block["by_threads"]
        cols = list(runs)
        lines += [
            "",
            f"| {data}: {block['n']} inputs, mean {block['mean_chars']:.0f} chars (median s) | "
            + " | ".join(f"{c} thread(s)" for c in cols)
            + " |",
            "|---|" + "---:|" * len(cols),
        ]

        def row(
            label: str, get: Callable[[dict[str, Any]], Any], runs: Any = runs, out: Any = lines
        ) -> None:
            out.append(f"| {label} | " + " | ".join(str(get(runs[c])) for c in runs) + " |")

        for name in names:
            row(name, lambda r, k=name: r["median_s"][k])  # type: ignore[misc]
        row(
            "decide overhead without model (ms)",
            lambda r: f"{1000 * r['decide_overhead_without_model_s']:.2f}",
        )
        for name in ratio_names:
            row(f"ratio {name}", lambda r, k=name: r["ratios"][k])  # type: ignore[misc]
        row(
            "accuracy fp32 / int8 (n)",
            lambda r: f"{r['accuracy']['fp32']} / {r['accuracy']['int8']} ({r['accuracy']['n']})",
        )
        row("int8 loss (points)", lambda r: r["accuracy"]["int8_loss_points"])
        row(
            "decide([x]) p50 / p95 ms",
            lambda r: (
                f"{1000 * r['single_latency_s']['p50']:.1f} / "
                f"{1000 * r['single_latency_s']['p95']:.1f}"
            ),
        )
        row("targets met", lambda r: ", ".join(k for k, v in r["targets"].items() if v) or "none")
    rn = report["runnable"]
    if not rn.get("skipped"):
        lines += [
            "",
            f"| runnable abatch, {rn['n']} inputs | wall s | LLM calls | tokens (in+out) | "
            "accuracy |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in ("all_to_llm", "datashunt"):
            r = rn[name]
            lines.append(
                f"| {name} | {r['wall_s']} | {r['llm_calls']} | {r['total_tokens']} | "
                f"{r['accuracy']} |"
            )
    lines += ["", f"peak RSS of the gate bench: {report['peak_rss_mb']} MiB. {MACHINE_NOTE}."]
    return "\n".join(lines).lstrip("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gate bench options (shared with ``python -m bench.run``)."""
    parser.add_argument(
        "--speed-gate", help=f"the HF gate directory to time (default {DEFAULT_GATE}, or train)"
    )
    parser.add_argument(
        "--speed-train-n",
        type=int,
        default=1000,
        help="reviews to fine-tune the timed gate on when there is none (1000)",
    )
    parser.add_argument(
        "--speed-data",
        default="amazon-mds,sst2",
        help="input sets to time, long and short (amazon-mds,sst2)",
    )
    parser.add_argument("--n", type=int, default=128, help="inputs for the gate timings (128)")
    parser.add_argument(
        "--accuracy-n", type=int, default=400, help="inputs for fp32 vs int8 accuracy (400)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after warm-up (3)")
    parser.add_argument("--threads", default="1,2", help="torch threads to try (1,2)")
    parser.add_argument("--llm-n", type=int, default=40, help="inputs for the runnable (40)")
    parser.add_argument("--no-llm", action="store_true", help="skip the runnable/LLM part")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The gate and runnable figures: ``{"gate": ..., "runnable": ..., "peak_rss_mb": ...}``."""
    if args.n < 1 or args.repeats < 1:
        raise SystemExit("--n and --repeats must be >= 1")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]

    import torch

    from datashunt import ShuntPolicy, load_gate
    from datashunt.policy import POLICY_FILE

    gate_dir = _resolve_gate(args.speed_gate, args.speed_train_n)
    gate: Any = load_gate(gate_dir)
    if not hasattr(gate, "model"):
        raise SystemExit(f"{gate_dir} is not a Hugging Face gate (HFGate): nothing to time")
    policy = (
        ShuntPolicy.load(gate_dir)
        if (gate_dir / POLICY_FILE).is_file()
        else ShuntPolicy(labels=tuple(gate.labels))
    )
    index = {lab: i for i, lab in enumerate(gate.labels)}
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "note": MACHINE_NOTE,
        },
        "gate": {
            "dir": str(gate_dir),
            "batch_size": gate.batch_size,
            "max_batch_tokens": gate.max_batch_tokens,
            "max_length": gate.max_length,
            "threshold": policy.threshold,
            "repeats": args.repeats,
            "warmup": 1,
            "inputs": {},
        },
    }
    first_texts: list[str] = []
    first_gold: list[int] = []
    for data in [d.strip() for d in args.speed_data.split(",") if d.strip()]:
        ds = _read_inputs(data, max(args.n, args.accuracy_n))
        all_texts = list(ds.texts)
        all_gold = [index[e.label] for e in ds.examples]
        texts, gold = all_texts[: args.n], all_gold[: args.n]
        if not first_texts:
            first_texts, first_gold = texts, gold
        block: dict[str, Any] = {
            "n": len(texts),
            "mean_chars": round(sum(map(len, texts)) / max(1, len(texts)), 1),
            "by_threads": {},
        }
        for t in threads:
            figures = bench_gate(
                gate,
                policy,
                texts,
                gold,
                threads=t,
                repeats=args.repeats,
                acc_texts=all_texts,
                acc_gold=all_gold,
            )
            block["by_threads"][str(t)] = figures
            print(f"{data} threads={t}: {json.dumps(figures['ratios'])}", flush=True)
        report["gate"]["inputs"][data] = block
    torch.set_num_threads(max(threads))
    if args.no_llm:
        report["runnable"] = {"skipped": True, "reason": "--no-llm"}
    else:
        n = args.llm_n
        report["runnable"] = bench_runnable(gate, policy, first_texts[:n], first_gold[:n])
    report["peak_rss_mb"] = _rss_mb()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gate speed benchmark; writes the JSON figures and prints a markdown table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.gate_speed", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON figures ({RESULTS})")
    args = parser.parse_args(argv)
    report = {
        "command": " ".join(
            ["python -m bench.gate_speed", *(argv if argv is not None else sys.argv[1:])]
        ),
        **run(args),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(gate_table(report))
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
