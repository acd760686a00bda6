"""``datashunt distill``: 2-Stage Confidence Distillation from a call store, on the command line.

Single process: ``datashunt distill --store runs/calls.sqlite --gate runs/gate --out
runs/gate-2cd --dev-data amazon-mds:dev``. Several GPUs or machines, with no code change:
``accelerate launch -m datashunt distill ...`` (the same options; ``-m datashunt.cli.distill``
also works, without the subcommand).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import existing_gate, label_names, report_errors

__all__ = ["add_arguments", "main", "register", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``distill`` options (shared by ``datashunt distill`` and :func:`main`)."""
    p.add_argument("--store", required=True, help="call store: SQLite path or SQLAlchemy URL")
    p.add_argument(
        "--gate",
        required=True,
        help="the production gate directory (F_s1) from train-gate: fine-tuned (2CD trains a "
        "copy) or embedding (its head is refit, the encoder frozen)",
    )
    p.add_argument("--out", required=True, help="directory for the distilled gate (F_s2)")
    data = p.add_argument_group(
        "data", "FILE (.csv/.tsv/.jsonl) or a bundled set as NAME:SPLIT, e.g. amazon-mds:dev"
    )
    data.add_argument("--dev-data", required=True, help="labelled original dev data")
    data.add_argument("--train-data", help="the gate's training data, for stage 2")
    data.add_argument("--eval-data", help="labelled data from the logged distribution")
    data.add_argument("--calib-data", help="labelled data to re-calibrate δ on (default dev)")
    data.add_argument("--text-col", help="text column(s) of data files, comma-separated")
    data.add_argument("--label-col", help="label column of data files")
    data.add_argument("--label-names", help="map raw labels to names: 0=negative,1=positive")
    data.add_argument("--group-col", help="column naming a slice, for per-group figures")
    data.add_argument(
        "--encoding", default="utf-8", help="text encoding of data files (default utf-8)"
    )
    p.add_argument(
        "--method",
        choices=("2cd", "stage1", "finetune"),
        default="2cd",
        help="2cd (both stages), stage1 (ablation: LLM distributions only), finetune "
        "(ablation: cross-entropy on the LLM's parsed labels)",
    )
    p.add_argument("--rounds", type=int, default=2, help="stage alternations (default 2)")
    p.add_argument("--epochs", type=int, default=1, help="passes per stage per round")
    p.add_argument("--lr", type=float, default=3e-5, help="AdamW learning rate (default 3e-5)")
    p.add_argument("--batch-size", type=int, default=16, help="per process (default 16)")
    p.add_argument(
        "--max-length",
        type=int,
        default=256,
        help="tokens per input: what the gate runs with (default 256, as HFGate)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        help="T of stage 2 (default: the gate's calibrated temperature, i.e. its C_s1)",
    )
    p.add_argument("--threshold", type=float, help="δ (default: the gate's policy)")
    p.add_argument(
        "--llm-min-confidence",
        type=float,
        default=0.8,
        help="δ_l: stage 1 needs C_l > δ_l (default 0.8)",
    )
    p.add_argument(
        "--trust-unscored",
        action="store_true",
        help="use LLM answers logged without logprobs (no C_l) as one-hot targets",
    )
    p.add_argument("--stage2-max", type=int, help="at most this many stage-2 inputs per round")
    p.add_argument("--seed", type=int, default=0, help="data order, sampling, dropout")
    p.add_argument(
        "--target",
        help="calibration target of the new δ: budget:R, precision:P, accuracy:A "
        "(default: the old policy's)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _read(spec: str | None, args: argparse.Namespace) -> Any:
    from ..data import KNOWN_DATASETS, read_dataset

    if spec is None:
        return None
    name, sep, split = spec.rpartition(":")
    if sep and name in KNOWN_DATASETS:
        return read_dataset(name, split=split)
    return read_dataset(
        spec,
        text_col=args.text_col,
        label_col=args.label_col,
        label_names=label_names(args.label_names),
        group_col=args.group_col,
        encoding=args.encoding,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``distill`` for parsed arguments; prints the report table."""
    from ..training import DISTILL_REPORT_FILE, DistillConfig, distill_gate, parse_target

    config = DistillConfig(
        method=args.method,
        rounds=args.rounds,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        temperature=args.temperature,
        threshold=args.threshold,
        llm_min_confidence=args.llm_min_confidence,
        trust_unscored=args.trust_unscored,
        stage2_max=args.stage2_max,
        seed=args.seed,
    )
    target = parse_target(args.target) if args.target else None
    report = distill_gate(
        args.store,
        existing_gate(args.gate),
        args.out,
        dev=_read(args.dev_data, args),
        train=_read(args.train_data, args),
        eval_data=_read(args.eval_data, args),
        calib=_read(args.calib_data, args),
        config=config,
        target=target,
        progress=not args.no_progress,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(report.format())
        print(f"\nwrote {report.out_dir} (gate, {Path(args.out, DISTILL_REPORT_FILE).name})")
    return 0


def register(sub: Any) -> None:
    """Add ``distill`` to the subcommands."""
    p = sub.add_parser("distill", help="distil the LLM's logged answers into the gate (2CD)")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``datashunt distill`` as a function; returns the exit code (2 for a datashunt error)."""
    parser = argparse.ArgumentParser(
        prog="datashunt distill",
        description="Distil the LLM's logged answers into the gate (2-Stage Confidence "
        "Distillation); writes a new gate directory, its policy and a report.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return report_errors(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
