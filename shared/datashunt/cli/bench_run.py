"""``datashunt bench``: the quality and cost table, the δ-sweep plot, against any LLM.

The LLM is the embedded local server (``--llm-url local``, the default), any OpenAI-compatible
endpoint (``--llm-url https://.../v1 --llm-model NAME``, key from ``$OPENAI_API_KEY``), or
recorded answers (``--replay answers.jsonl``, no model called). Answers are cached by
(model, prompt) in ``--cache`` so a re-run pays nothing; ``--fresh`` asks again.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..benchmark.tasks import METHODS, BenchConfig
from ..errors import ConfigError

__all__ = ["QUICK", "add_arguments", "bench_from_args", "config_from_args", "llm_from_args", "run"]

#: ``--quick``: sizes for a run of a few minutes on 2 CPU cores.
QUICK = {"test_n": 24, "dev_n": 120, "train_n": 200}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` options."""
    p.add_argument(
        "--data",
        default="amazon-mds,sst2,agnews",
        help="comma-separated bundled data sets (default amazon-mds,sst2,agnews); with "
        "--llm-column also mr, isear or a CSV/TSV/JSONL file with a split column",
    )
    p.add_argument(
        "--test-n",
        type=int,
        help="test inputs per data set (default 400; every row with --llm-column)",
    )
    p.add_argument(
        "--dev-n",
        type=int,
        help="dev inputs to choose δ on (default 1000; every row with --llm-column)",
    )
    p.add_argument("--train-n", type=int, default=2000, help="training inputs per gate (2000)")
    p.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    p.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="DATA=DIR",
        help="use this gate for a data set (repeatable; a bare DIR with one data set); "
        "default: train a gate",
    )
    p.add_argument("--target", default="budget:0.3", help="how δ is chosen on dev (budget:0.3)")
    p.add_argument("--methods", default=",".join(METHODS), help="rows to produce (default: all)")
    p.add_argument("--transfer-budget", type=int, default=64, help="DS+ token budget (64)")
    llm = p.add_argument_group("the LLM")
    llm.add_argument(
        "--llm-url",
        default="local",
        help="OpenAI-compatible base URL, or 'local' for the embedded server (default)",
    )
    llm.add_argument("--llm-model", help="model name at --llm-url (the cache key's model)")
    llm.add_argument("--llm-threads", type=int, help="CPU threads of the local server")
    llm.add_argument("--replay", help="answer from recorded answers (CSV/JSONL), call no model")
    llm.add_argument(
        "--llm-column",
        action="append",
        default=[],
        metavar="[DATA=]COL[,COL2]",
        help="the LLM is the answers recorded in this column of the data file (an empty cell "
        "is an unreadable answer); a second column adds a cascade. Repeatable per data set: "
        "--llm-column mr=llm_label --llm-column isear=gpt35_label,llama2_70b_label",
    )
    llm.add_argument("--concurrency", type=int, default=1, help="LLM calls in flight (1)")
    llm.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM call (60)")
    llm.add_argument(
        "--cache",
        default=".cache/bench/llm_cache.sqlite",
        help="LLM answer cache: SQLite path or SQLAlchemy URL (default .cache/bench/...)",
    )
    llm.add_argument("--fresh", action="store_true", help="ignore cached answers, ask again")
    llm.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    llm.add_argument(
        "--record", help="write every cached answer of this model to this JSONL (replayable)"
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", default="bench-results/bench.json", help="JSON report path")
    out.add_argument("--markdown", help="markdown tables path (default: beside --out)")
    out.add_argument("--plot", help="δ-sweep PNG path (default: beside --out)")
    out.add_argument("--no-plot", action="store_true", help="no PNG (matplotlib not needed)")
    p.add_argument("--cache-dir", default=".cache/gates", help="where trained gates are kept")
    p.add_argument("--seed", type=int, default=0, help="training subsets, random router")
    rec = p.add_argument_group("data files and recorded answers (with --llm-column)")
    rec.add_argument("--text-col", help="text column(s) of a data file (default text)")
    rec.add_argument("--label-col", help="label column of a data file (default label)")
    rec.add_argument("--split-col", help="split column of a data file (train/dev/test)")
    rec.add_argument("--label-names", help="map raw labels to names: 0=negative,1=positive")
    rec.add_argument("--encoding", default="utf-8", help="text encoding of a data file")
    rec.add_argument(
        "--budgets", default="0.2,0.3,0.4,0.5", help="LLM-call budgets δ is chosen for on dev"
    )
    rec.add_argument(
        "--llm-cost",
        action="append",
        default=[],
        metavar="COL=X",
        help="relative cost of one call per answer column (cascade; default llama2_70b 0.9, "
        "others 1)",
    )
    rec.add_argument(
        "--deferral",
        action="store_true",
        help="also try learned deferral scores: a head trained on the train split's recorded "
        "answers, and 'deferral-dev', one cross-fitted on dev (with --gate A+B it also reads "
        "every given gate's probabilities); each is kept only where it beats max on dev",
    )
    rec.add_argument(
        "--gate-kind",
        choices=("finetune", "embedding"),
        help="the gate trained when --gate is not given (default: the data set's recipe)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A :class:`~datashunt.benchmark.BenchConfig` from the parsed options."""
    gates = {}
    for spec in args.gate:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--gate wants DATA=DIR, got {spec!r}")
        gates[name.strip()] = path.strip()
    sizes = {
        "test_n": 400 if args.test_n is None else args.test_n,
        "dev_n": 1000 if args.dev_n is None else args.dev_n,
        "train_n": args.train_n,
    }
    if args.quick:
        sizes = dict(QUICK)
    return BenchConfig(
        datasets=tuple(d.strip() for d in args.data.split(",") if d.strip()),
        gates=gates,
        target=args.target,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        transfer_budget=args.transfer_budget,
        concurrency=args.concurrency,
        cache_dir=args.cache_dir,
        seed=args.seed,
        **sizes,
    )


@contextmanager
def llm_from_args(args: argparse.Namespace) -> Iterator[tuple[Any, str, Any, dict[str, Any]]]:
    """``(llm, model, latency_of, info)`` for the options: replay, URL or the local server,
    wrapped in the answer cache unless ``--no-cache``. Stops a local server on exit."""
    from ..llm import CachedLLM, LLMCache, LLMServer, OpenAICompatLLM, ReplayLLM

    server: LLMServer | None = None
    info: dict[str, Any] = {}
    try:
        if args.replay:
            base: Any = ReplayLLM(args.replay)
            model = args.llm_model or base.model
            info["replay"] = str(args.replay)
        else:
            url = args.llm_url
            if url == "local":
                # all cores: the gate is idle while the LLM answers
                threads = args.llm_threads or max(1, os.cpu_count() or 1)
                print(f"starting the embedded local LLM server ({threads} threads) ...")
                server = LLMServer(n_threads=threads).start()
                url = server.base_url
                model = args.llm_model or server.model_name
            else:
                if not args.llm_model:
                    raise ConfigError("--llm-url needs --llm-model (the model name to ask)")
                model = args.llm_model
            # no logprobs: the bench reads only the answer, and they cost ~35 % of the local
            # server's time per call (the cache key is the prompt, so cached answers still serve)
            base = OpenAICompatLLM(url, model, timeout=args.timeout, top_logprobs=0)
            info["url"] = url if server is None else "local"
        info["model"] = model
        if args.replay:  # recorded answers cost nothing now; report what they cost then
            yield base, model, lambda: base.last_latency_s, info
            return
        if args.no_cache:
            yield base, model, None, info
            return
        cache_path = args.cache
        if "://" not in cache_path:
            Path(cache_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        cache = LLMCache(cache_path)
        cached = CachedLLM(base, cache, model, fresh=args.fresh)
        info["cache"] = {"path": cache_path, "fresh": bool(args.fresh)}
        yield cached, model, lambda: cached.last_latency_s, info
    finally:
        if server is not None:
            server.stop()


def bench_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`~datashunt.benchmark.run_bench` with the options' LLM; the report's ``llm`` says
    what answered, with the cache's hits and misses (or the replay's misses)."""
    from ..benchmark.runner import run_bench
    from ..llm import CachedLLM, ReplayLLM

    config = config_from_args(args)
    if args.record and (args.replay or args.no_cache):
        raise ConfigError("--record writes the answer cache out: drop --replay / --no-cache")
    with llm_from_args(args) as (llm, model, latency_of, info):
        report = run_bench(
            config, llm, model=model, latency_of=latency_of, progress=not args.no_progress
        )
        if isinstance(llm, CachedLLM):
            info["cache"].update(hits=llm.hits, misses=llm.misses)
            if args.record:
                n = llm.cache.export_jsonl(args.record, model=model)
                print(f"wrote {n} recorded answers to {args.record}")
        elif isinstance(llm, ReplayLLM):
            info["replay_misses"] = llm.misses
    report["llm"] = info
    return report


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write the JSON, markdown and PNG outputs."""
    from ..benchmark.report import markdown_report, plot_curves, write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.llm_column:
        from .bench_recorded import run_recorded

        return run_recorded(args, out, t0)
    report = bench_from_args(args)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(report, out)
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    md.write_text(markdown_report(report), encoding="utf-8")
    print(f"wrote {out} and {md}")
    if not args.no_plot:
        png = plot_curves(report, Path(args.plot) if args.plot else out.with_suffix(".png"))
        print(f"wrote {png}")
    return 0
