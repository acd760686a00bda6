"""The ``datashunt`` command line: train-gate, calibrate, predict, store, distill, bench,
llm-server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataShuntError

__all__ = ["main"]


def _label_names(spec: str | None) -> dict[str, str] | None:
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        raw, sep, name = part.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise ConfigError(f"--label-names wants RAW=NAME pairs like 0=negative, got {part!r}")
        out[raw.strip()] = name.strip()
    return out


def _add_data_args(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="a bundled data set (amazon-mds, sst2, agnews) or a .csv/.tsv/.jsonl file",
    )
    p.add_argument("--split", default=split, help=f"split to read (default {split})")
    p.add_argument("--text-col", help="text column(s), comma-separated (joined with '. ')")
    p.add_argument("--label-col", help="label column")
    p.add_argument("--label-names", help="map raw labels to names: 0=negative,1=positive")
    p.add_argument("--split-col", help="column holding the split name, if the file has one")
    p.add_argument("--no-header", action="store_true", help="TSV/CSV without a header row")
    p.add_argument("--limit", type=int, help="read at most this many examples")


def _read(args: argparse.Namespace, split: str | None, labels: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
    from .data import KNOWN_DATASETS, read_dataset

    known = args.data in KNOWN_DATASETS
    return read_dataset(
        args.data,
        split=split if (known or args.split_col) else None,
        text_col=args.text_col,
        label_col=args.label_col,
        label_names=_label_names(args.label_names),
        split_col=args.split_col,
        header=not args.no_header,
        labels=labels,
        limit=args.limit,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train_gate

    train = _read(args, args.split)
    dev = _read(args, args.dev_split, train.labels) if args.dev_split else None
    cfg = TrainConfig(
        kind=args.kind,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    print(f"training a {cfg.kind} gate on {len(train)} examples, labels {list(train.labels)}")
    rep = train_gate(train, args.out, dev=dev, backbone=args.backbone, config=cfg)
    print(f"wrote {rep.out_dir} in {rep.seconds:.1f}s")
    if rep.dev_accuracy is not None:
        print(
            f"dev accuracy {rep.dev_accuracy:.4f} on {rep.n_dev} examples "
            f"(majority class {rep.majority_accuracy:.4f})"
        )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import MaxAccuracy, calibrate, parse_target
    from .gates import load_gate

    gate = load_gate(args.gate)
    dev = _read(args, args.split, gate.labels)
    if args.target == "accuracy" and args.llm_url and args.llm_accuracy is None:
        target: Any = MaxAccuracy(llm_correct=_measure(args, gate, dev))
    else:
        target = parse_target(args.target, llm_accuracy=args.llm_accuracy)
    report = calibrate(
        gate,
        dev,
        target,
        prune_epsilon=args.epsilon,
        min_reliable_recall=args.min_reliable_recall,
    )
    print(report.format())
    if not args.dry_run:
        path = report.policy.save(Path(args.gate))
        print(f"\nwrote {path}")
    return 0


def _measure(args: argparse.Namespace, gate: Any, dev: Any) -> Any:
    """Per-example LLM correctness on a dev sample, through the endpoint or the local server."""
    from contextlib import nullcontext

    from .calibration import measure_llm
    from .llm_server import LLMServer
    from .openai_compat import OpenAICompatLLM

    local = args.llm_url == "local"
    with LLMServer() if local else nullcontext(None) as server:
        url = server.base_url if server is not None else args.llm_url
        model = args.llm_model or (server.model_name if server is not None else "gpt-4o-mini")
        llm = OpenAICompatLLM(url, model)
        print(f"measuring {model} at {url} on {args.llm_sample} dev inputs ...")
        correct = measure_llm(gate, dev, llm, sample=args.llm_sample)
    asked = correct[~np.isnan(correct)]
    print(f"LLM accuracy on the sample: {asked.mean():.4f} ({asked.size} asked)")
    return correct


def _cmd_predict(args: argparse.Namespace) -> int:
    from .shunt import Shunt

    shunt = Shunt.from_dir(args.gate)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for text, d in zip(texts, shunt.decide(texts), strict=True):
        row = {
            "text": text[:80],
            "route": d.route,
            "label": d.label,
            "confidence": round(d.confidence, 4),
            "candidates": list(d.candidates),
        }
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _cmd_store(args: argparse.Namespace) -> int:
    from .store import CallStore

    store = CallStore(args.store)
    if args.action == "stats":
        print(json.dumps(store.stats(), indent=2, default=str))
    else:
        if not args.out:
            raise ConfigError("store export needs --out FILE.jsonl")
        n = store.export_jsonl(args.out)
        print(f"wrote {n} records to {args.out}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from .distill_cli import run

    return run(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark_cli import run

    return run(args)


def _cmd_llm_server(args: argparse.Namespace) -> int:
    from . import llm_server

    return llm_server.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="datashunt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-gate", help="train a gate and write its model directory")
    _add_data_args(p, "train")
    p.add_argument("--dev-split", default="dev", help="split to evaluate on ('' for none)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--kind", choices=("finetune", "embedding"), default="finetune")
    p.add_argument("--backbone", help="local model directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("calibrate", help="fit the temperature and choose the threshold δ")
    p.add_argument("--gate", required=True, help="gate directory (the policy is saved there)")
    _add_data_args(p, "dev")
    p.add_argument(
        "--target",
        default="precision:0.97",
        help="budget:R (LLM-call rate <= R), precision:P (small route >= P right), or "
        "accuracy[:A] (max expected accuracy, LLM accuracy A)",
    )
    p.add_argument("--llm-accuracy", type=float, help="the LLM's accuracy, for --target accuracy")
    p.add_argument(
        "--llm-url",
        help="measure the LLM's accuracy for --target accuracy: an OpenAI-compatible base URL, "
        "or 'local' to start the embedded server",
    )
    p.add_argument("--llm-model", help="model name at --llm-url")
    p.add_argument("--llm-sample", type=int, default=100, help="dev inputs to ask the LLM")
    p.add_argument("--epsilon", type=float, default=0.05, help="hard-pruning ε")
    p.add_argument("--min-reliable-recall", type=float, default=0.9)
    p.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("predict", help="print the gate's decision for texts (args or stdin)")
    p.add_argument("--gate", required=True)
    p.add_argument("text", nargs="*")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("store", help="inspect a call store")
    p.add_argument("action", choices=("stats", "export"))
    p.add_argument("--store", required=True, help="SQLite path or SQLAlchemy URL")
    p.add_argument("--out", help="JSONL file for export")
    p.set_defaults(func=_cmd_store)

    from .distill_cli import add_arguments as add_distill_arguments

    p = sub.add_parser("distill", help="distil the LLM's logged answers into the gate (2CD)")
    add_distill_arguments(p)
    p.set_defaults(func=_cmd_distill)

    from .benchmark_cli import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="quality and cost table: gate, LLM, shunt, routers")
    add_bench_arguments(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("llm-server", help="serve the embedded local LLM (OpenAI-compatible)")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="--model PATH --port N --n-ctx N --threads N"
    )
    p.set_defaults(func=_cmd_llm_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for a datashunt error, with its message)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["llm-server"]:  # its options belong to the server's own parser
        from . import llm_server

        return llm_server.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DataShuntError as exc:
        print(f"datashunt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
