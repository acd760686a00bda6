"""``datashunt batch``: the shunt over a whole data file, locally or on Ray, resumable.

With ``--labels`` instead of ``--gate`` (no gate yet) it is a shadow job: every row to the LLM,
each answer recorded in ``--store`` for ``datashunt bootstrap`` to train the first gate on.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .common import existing_gate, warn

__all__ = ["register"]


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import BatchConfig, run_batch_job
    from ..errors import ConfigError
    from ..llm.retry import RetryPolicy

    llm_url = args.llm_url
    if llm_url is None and args.llm_column is None:
        llm_url = os.environ.get("OPENAI_BASE_URL")  # as the openai SDK reads it
    cfg = BatchConfig(
        data=Path(args.data),
        out=Path(args.out),
        gate=Path(existing_gate(args.gate)) if args.gate is not None else None,
        labels=_labels(args.labels) if args.labels is not None else None,
        llm_url=llm_url,
        llm_model=args.llm_model,
        llm_column=args.llm_column,
        engine=args.engine,
        budget=args.budget,
        delta=args.delta,
        store=args.store,
        text_col=args.text_col,
        id_col=args.id_col,
        workers=args.workers,
        batch_size=args.batch_size,
        backend=args.backend,
        device=args.device,
        max_concurrency=args.max_concurrency,
        rate=args.rate,
        chunk=args.chunk,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        prompt_mode=args.prompt_mode,
        ray_address=args.ray_address,
        retry=RetryPolicy(attempts=args.llm_attempts, deadline=args.llm_deadline),
        stop_after_failures=args.stop_after_failures,
    )
    if args.resume and not (cfg.work / "job.json").is_file():
        raise ConfigError(
            f"--resume: no job to resume in {cfg.work} (run without --resume to start it, or "
            "pass the --work-dir of the earlier run)"
        )
    summary = run_batch_job(cfg)
    # the store: where `datashunt bootstrap --store` finds a shadow job's answers
    print(json.dumps({"out": str(cfg.out), "store": cfg.store_url, **summary.to_json()}))
    if summary.failed_rows:
        stands = "no label: there is no gate" if cfg.shadow else "the gate's label stands"
        warn(
            f"{summary.failed_rows} rows got no LLM answer ({stands}, the error column says "
            "why): run the same command again to ask exactly those rows"
        )
    return 0


def _labels(spec: str) -> tuple[str, ...]:
    """``--labels a,b,c`` as names (checked by :class:`~datashunt.batch.BatchConfig`)."""
    return tuple(part.strip() for part in spec.split(",") if part.strip())


def register(sub: Any) -> None:
    """Add ``batch`` to the subcommands."""
    p = sub.add_parser(
        "batch",
        help="label a whole CSV/JSONL/Parquet file: gate pass, LLM for the uncertain rows",
        description="Pass 1 runs the gate over every row (one model per Ray worker with "
        "--engine ray); δ is given or chosen so that the LLM gets --budget of the rows; pass 2 "
        "asks the LLM, each answer cached by (model, prompt) in --store. Run it again after a "
        "crash: it makes no paid call twice and writes the same output. With no gate yet, "
        "--labels instead of --gate (a shadow job): every row goes to the LLM as your chain "
        "would ask it (every label on offer, no hint), each answer recorded in --store with its "
        "parsed label; then `datashunt bootstrap --store S --labels ...` trains the first gate.",
    )
    p.add_argument("--data", required=True, help="input .csv, .jsonl or .parquet")
    p.add_argument("--out", required=True, help="output .parquet (one row per input row)")
    # --gate or --labels: checked by BatchConfig, whose message says what each one does
    p.add_argument("--gate", help="gate folder (datashunt train-gate --out)")
    p.add_argument(
        "--labels",
        help="no gate yet: the labels, e.g. negative,positive (a shadow job: every row to the "
        "LLM, recorded in --store for `datashunt bootstrap`)",
    )
    llm = p.add_mutually_exclusive_group()
    llm.add_argument(
        "--llm-url", help="an OpenAI-compatible endpoint (default $OPENAI_BASE_URL), --llm-model"
    )
    llm.add_argument("--llm-column", help="a column of recorded answers instead of an LLM")
    p.add_argument("--llm-model", help="the model name sent and used in the cache key")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    route = p.add_mutually_exclusive_group()
    route.add_argument("--budget", type=float, help="LLM share of the rows, e.g. 0.3 (--gate)")
    route.add_argument("--delta", type=float, help="a fixed threshold δ (--gate)")
    p.add_argument("--store", help="call store / LLM cache URL or path (default in the work dir)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--id-col", default="id", help="unique row id (default: the row number)")
    p.add_argument("--workers", type=int, default=1, help="Ray actors holding the gate")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--backend",
        choices=("torch", "int8", "bf16", "onnx", "onnx-int8"),
        default="torch",
        help="the gate's runtime; onnx-int8 is the fastest on a CPU (BENCHMARKS.md)",
    )
    p.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:N or auto (the torch gate on a GPU)"
    )
    p.add_argument("--max-concurrency", type=int, default=16, help="LLM calls in flight")
    p.add_argument("--rate", type=float, help="at most this many LLM calls per second")
    p.add_argument("--chunk", type=int, default=256, help="LLM rows per checkpoint")
    p.add_argument(
        "--llm-attempts", type=int, default=3, help="tries per LLM call, the first included"
    )
    p.add_argument(
        "--llm-deadline",
        type=float,
        default=30.0,
        help="seconds for one LLM call, its retries included (default 30)",
    )
    p.add_argument(
        "--stop-after-failures",
        type=int,
        default=20,
        help="stop asking after this many failed calls in a row (a dead endpoint): the output "
        "is written with the unanswered rows marked, exit code 2",
    )
    p.add_argument("--work-dir", help="checkpoints (default OUT.work)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the job in the work dir, asking again the rows that failed (any rerun "
        "does; with --resume a missing work dir is an error, not a fresh start)",
    )
    p.add_argument(
        "--prompt-mode",
        choices=("none", "soft", "hard", "both"),
        default="soft",
        help="the gate's hint in the prompt (a shadow job always sends none)",
    )
    p.add_argument("--ray-address", help="an existing Ray cluster (default: a local one)")
    p.set_defaults(func=_cmd_batch)
