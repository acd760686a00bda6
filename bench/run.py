"""``make bench`` / ``make bench-quick``: every figure of issue 6 in one run, one JSON file.

1. Quality and cost (``datashunt bench``): per data set, the small model, the LLM, the shunt
   without / with soft / with hard pruning, DS+, a random and an oracle router at the same LLM
   rate; δ chosen on dev, reported on test; the δ-sweep curve as a PNG.
2. Speed of the gate and of the runnable (``bench.gate_speed``): raw forward pass vs
   ``predict_proba`` vs ``Shunt.decide``, one-by-one vs bucketed batching, int8, latency,
   ``DataShuntRunnable.abatch`` vs all-to-LLM, peak memory.

Writes ``bench/results/latest.json`` (keys ``datasets``, ``gate``, ``runnable``, plus
``machine``, ``command``, ``seconds``), ``latest.md`` (the tables) and ``latest.png`` (the
curves). LLM answers are cached in ``.cache/bench/llm_cache.sqlite``: a re-run pays only for
new prompts (``--fresh`` asks again).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import gate_speed
from bench.common import RESULTS, machine, peak_rss_mb

#: ``--quick``: the same figures on small samples, a few minutes on 2 cores.
QUICK = [
    *("--n", "24", "--repeats", "1", "--threads", "2", "--llm-n", "8"),
    *("--speed-train-n", "64", "--accuracy-n", "24"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts; returns 0."""
    from datashunt.benchmark import markdown_report, plot_curves
    from datashunt.cli import bench_run as benchmark_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    benchmark_cli.add_arguments(parser)
    gate_speed.add_arguments(parser)
    parser.add_argument("--name", default="latest", help="output file stem (latest)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="output folder")
    parser.add_argument("--no-speed", action="store_true", help="skip the gate/runnable part")
    parser.add_argument("--no-quality", action="store_true", help="skip the quality table")
    quick = "--quick" in argv
    # one thread setting keeps the full run well inside 45 minutes; bench.gate_speed alone
    # compares 1 and 2 threads
    defaults = QUICK if quick else ["--threads", "2"]
    args = parser.parse_args(defaults + argv)
    if quick and args.name == "latest":
        args.name = "quick"

    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python -m bench.run " + " ".join(argv),
        "machine": machine(platform=platform.platform(), note=gate_speed.MACHINE_NOTE),
    }
    if not args.no_quality:
        quality = benchmark_cli.bench_from_args(args)
        report.update(
            datasets=quality["datasets"],
            config=quality["config"],
            llm=quality["llm"],
            quality_seconds=quality["seconds"],
        )
    if not args.no_speed:
        t_speed = time.perf_counter()
        speed = gate_speed.run(args)
        report.update(
            gate=speed["gate"], runnable=speed["runnable"], torch=speed["machine"]["torch"]
        )
        report["speed_seconds"] = round(time.perf_counter() - t_speed, 1)
    report["peak_rss_mb"] = peak_rss_mb()
    # the local LLM server is a child process: its peak (the largest child's) is reported apart
    report["peak_rss_children_mb"] = peak_rss_mb(children=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    parts = [f"# Benchmark `{args.name}`\n", f"`{report['command']}`, {report['seconds']} s.\n"]
    if "datasets" in report:
        parts.append(markdown_report({"datasets": report["datasets"]}))
        png = plot_curves(
            {"datasets": report["datasets"], "model": report["llm"]["model"]},
            args.results / f"{args.name}.png",
        )
        parts.append(f"![accuracy against LLM-call rate]({png.name})\n")
    if "gate" in report:
        parts.append("## Gate and runnable\n")
        parts.append(gate_speed.gate_table(report))
    md = args.results / f"{args.name}.md"
    md.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print("\n".join(parts))
    print(f"wrote {out}, {md} ({report['seconds']} s, peak RSS {report['peak_rss_mb']} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
