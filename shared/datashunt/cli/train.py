"""``datashunt train-gate`` and ``datashunt calibrate``."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..gates import Gate
from ..llm import RetryPolicy
from .common import add_data_args, existing_gate, read_data, warn

__all__ = ["register"]


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, TrainReport, train_gate

    rep: TrainReport
    if args.kind == "image":
        rep = _train_image(args)
    else:
        train, dev = _train_and_dev(args)
        if args.kind == "embedding":
            given = [o for o in ("epochs", "lr", "batch_size") if getattr(args, o) is not None]
            if given:  # only the head learns, by L-BFGS: no epochs, learning rate or batches
                opts = ", ".join("--" + o.replace("_", "-") for o in given)
                warn(f"{opts} ignored with --kind embedding (only the linear head learns)")
        cfg = TrainConfig(
            kind=args.kind,
            epochs=args.epochs or 2,
            lr=args.lr or 5e-5,
            batch_size=args.batch_size or 16,
            max_length=args.max_length,
            seed=args.seed,
        )
        what = "an embedding" if cfg.kind == "embedding" else f"a {cfg.kind}"
        print(f"training {what} gate on {len(train)} examples, labels {list(train.labels)}")
        rep = train_gate(
            train, args.out, dev=dev, backbone=args.backbone, config=cfg, progress=True
        )
    print(f"wrote {rep.out_dir} in {rep.seconds:.1f}s")
    if rep.dev_accuracy is not None:
        print(
            f"dev accuracy {rep.dev_accuracy:.4f} on {rep.n_dev} examples "
            f"(majority class {rep.majority_accuracy:.4f})"
        )
    return 0


def _train_and_dev(args: argparse.Namespace) -> tuple[Dataset, Dataset | None]:
    """The training data, and the dev data: ``--dev-split`` of a bundled set or of a file with
    ``--split-col``; else a seeded random ``--dev-share`` of the file, held out here."""
    from ..data import KNOWN_DATASETS

    skip = True if args.skip_empty_labels else None
    train = read_data(args, args.split, skip_empty=skip)
    _say_skipped(train)
    if not args.dev_split:
        return train, None
    if args.data in KNOWN_DATASETS or args.split_col:
        return train, read_data(args, args.dev_split, train.labels, skip_empty=skip)
    n = len(train)
    train, dev = train.holdout(args.dev_share, args.seed)
    print(
        f"held out {len(dev)} of {n} examples ({args.dev_share:.0%}, seed {args.seed}) as dev "
        "data: the file has no dev split (--dev-share to change, --dev-split '' for none)"
    )
    return train, dev


def _say_skipped(data: Dataset) -> None:
    if data.skipped:
        warn(
            f"skipped {data.skipped} of {data.skipped + len(data)} rows without a label (for a "
            "store export: unparsed or failed LLM answers and gate-answered rows, never "
            "training labels)"
        )


def _train_image(args: argparse.Namespace) -> Any:
    """``--kind image``: ``--data`` is a folder with one sub-folder of images per class."""
    from ..training.fitting.image import ImageTrainConfig, image_folder, train_image_gate

    train = image_folder(args.data)
    dev = image_folder(args.dev_data, labels=train.labels) if args.dev_data else None
    cfg = ImageTrainConfig(
        epochs=args.epochs or 10,
        lr=args.lr or 1e-3,
        batch_size=args.batch_size or 32,
        image_size=args.image_size,
        seed=args.seed,
        threads=args.threads,
    )
    print(f"training an image gate on {len(train)} images, labels {list(train.labels)}")
    return train_image_gate(train, args.out, dev=dev, backbone=args.backbone, config=cfg)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..gates import load_gate
    from ..training import MaxAccuracy, Target, calibrate, check_calibration_rows, parse_target

    # --backend/--quantize: calibrate the gate as it will serve (and write its ONNX file)
    runtime = {"backend": args.backend} if args.backend != "torch" else {}
    runtime |= {"quantize": args.quantize} if args.quantize else {}
    gate = load_gate(existing_gate(args.gate), **runtime)
    dev = read_data(args, args.split, gate.labels)
    _say_skipped(dev)
    check_calibration_rows(len(dev), args.min_rows)  # before any LLM call is paid for
    target: Target
    if args.target == "accuracy" and args.llm_column and args.llm_accuracy is None:
        target = MaxAccuracy(llm_correct=_measure_recorded(args, gate, dev))
    elif args.target == "accuracy" and args.llm_url and args.llm_accuracy is None:
        target = MaxAccuracy(llm_correct=_measure(args, gate, dev))
    else:
        target = parse_target(args.target, llm_accuracy=args.llm_accuracy)
    report = calibrate(
        gate,
        dev,
        target,
        min_rows=args.min_rows,
        confidence=args.confidence,
        coverage=args.coverage,
        prune_epsilon=args.epsilon,
        min_reliable_recall=args.min_reliable_recall,
    )
    print(report.format(warnings=False))
    for message in report.warnings:  # once, on stderr
        warn(message)
    if not args.dry_run:
        path = report.policy.save(Path(args.gate))
        print(f"\nwrote {path}")
    return 0


def _measure_recorded(args: argparse.Namespace, gate: Gate, dev: Dataset) -> Any:
    """Per-example correctness of the answers recorded in ``--llm-column``, on all of dev,
    asked through the engine like a live model (an empty cell is a wrong answer)."""
    from ..llm import ColumnReplayLLM
    from ..training import measure_llm_sample

    llm = ColumnReplayLLM.from_data(
        args.data, args.llm_column, text_col=args.text_col, encoding=args.encoding
    )
    measured = measure_llm_sample(gate, dev, llm, sample=len(dev), retry=RetryPolicy(attempts=1))
    print(
        f"recorded LLM ({args.llm_column}) accuracy on {measured.asked} dev inputs: "
        f"{measured.accuracy:.4f} ({llm.empty} without a recorded label, counted wrong)"
    )
    return measured.correct


def _measure(args: argparse.Namespace, gate: Gate, dev: Dataset) -> Any:
    """Per-example LLM correctness on a dev sample, through the endpoint or the local server."""
    from ..llm import LLMServer, OpenAICompatLLM
    from ..training import measure_llm_sample

    local = args.llm_url == "local"
    with LLMServer() if local else nullcontext(None) as server:
        url = server.base_url if server is not None else args.llm_url
        model = args.llm_model or (server.model_name if server is not None else "gpt-4o-mini")
        llm = OpenAICompatLLM(url, model)
        print(f"measuring {model} at {url} on {args.llm_sample} dev inputs ...")
        measured = measure_llm_sample(gate, dev, llm, sample=args.llm_sample)
    measured.raise_if_failing()  # mostly failures measure the outage: stop, say why
    print(
        f"LLM accuracy on the sample: {measured.accuracy:.4f} ({measured.asked} asked, "
        f"{measured.failed} failed)"
    )
    if measured.failed:
        why = measured.reasons[0][0]
        warn(f"{measured.failed} of {measured.asked} LLM calls failed ({why}): counted as wrong")
    return measured.correct


def register(sub: Any) -> None:
    """Add ``train-gate`` and ``calibrate`` to the subcommands."""
    p = sub.add_parser("train-gate", help="train a gate and write its model directory")
    add_data_args(p, "train")
    p.add_argument("--dev-split", default="dev", help="split to evaluate on ('' for none)")
    p.add_argument(
        "--dev-share",
        type=float,
        default=0.1,
        help="a file without a dev split: hold out this random share as dev (default 0.1, "
        "drawn with --seed)",
    )
    p.add_argument(
        "--skip-empty-labels",
        action="store_true",
        help="leave out rows with an empty label and say how many (always done for a "
        "`datashunt store export` file: its unparsed LLM answers are never labels)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--kind",
        choices=("finetune", "embedding", "image"),
        default="finetune",
        help="image: --data is a folder with one sub-folder of images per class",
    )
    p.add_argument(
        "--backbone",
        help="local model directory (default: packaged all-MiniLM-L6-v2; for images a small "
        "ViT trained from scratch)",
    )
    p.add_argument("--epochs", type=int, help="default 2 (image: 10)")
    p.add_argument("--lr", type=float, help="default 5e-5 (image: 1e-3)")
    p.add_argument("--batch-size", type=int, help="default 16 (image: 32)")
    p.add_argument("--dev-data", help="--kind image: a folder of dev images to report accuracy on")
    p.add_argument("--image-size", type=int, default=32, help="--kind image: input side, pixels")
    p.add_argument(
        "--threads", type=int, help="--kind image: torch threads (1 is fastest on a busy CPU)"
    )
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    from ..training import MIN_CALIBRATION_ROWS

    p = sub.add_parser("calibrate", help="fit the temperature and choose the threshold δ")
    p.add_argument("--gate", required=True, help="gate directory (the policy is saved there)")
    add_data_args(p, "dev")
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
    p.add_argument(
        "--llm-column",
        help="for --target accuracy: the LLM's answers recorded in this column of the data "
        "(mr: llm_label; isear: gpt35_label, llama2_70b_label), measured on all of dev",
    )
    p.add_argument(
        "--confidence",
        type=float,
        help="certify δ: with this probability (e.g. 0.95) over the calibration sample the "
        "target holds on new data from the same distribution (Learn then Test)",
    )
    p.add_argument(
        "--coverage",
        type=float,
        help="hard pruning by split-conformal label sets holding the true label with this "
        "probability (e.g. 0.9); a set of one label is answered by the gate",
    )
    p.add_argument("--epsilon", type=float, default=0.05, help="hard-pruning ε")
    p.add_argument("--min-reliable-recall", type=float, default=0.9)
    p.add_argument(
        "--min-rows",
        type=int,
        default=MIN_CALIBRATION_ROWS,
        help=f"refuse fewer calibration rows (default {MIN_CALIBRATION_ROWS}); fewer than the "
        "target needs (100 for budget, accuracy and precision:0.97) are warned about once",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="calibrate on this runtime (onnx exports and caches the ONNX file beside the gate)",
    )
    p.add_argument(
        "--quantize",
        choices=("int8", "bf16"),
        help="calibrate the quantised gate (with --backend onnx: int8, the fastest CPU gate)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    p.set_defaults(func=_cmd_calibrate)
