"""What several commands share: the data options, reading data with them, and warnings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..data import KNOWN_DATASETS, Dataset, read_dataset
from ..errors import ConfigError, DataShuntError

__all__ = [
    "add_data_args",
    "existing_gate",
    "fail",
    "label_names",
    "read_data",
    "report_errors",
    "warn",
]


def fail(message: str) -> int:
    """One ``datashunt: error:`` line on stderr; returns the exit code 2."""
    print(f"datashunt: error: {message}", file=sys.stderr)
    return 2


def report_errors(command: Callable[[], int]) -> int:
    """Run ``command``; a user's error (any :class:`DataShuntError`, or a file the system
    refused) becomes one ``datashunt: error:`` line and exit code 2, never a traceback."""
    try:
        return int(command())
    except DataShuntError as exc:
        return fail(str(exc))
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a file the user named: a bug, keep its traceback
        return fail(f"{exc.filename}: {exc.strerror or exc}")


def warn(message: str) -> None:
    """One ``datashunt: warning:`` line on stderr (loud, but the command goes on)."""
    print(f"datashunt: warning: {message}", file=sys.stderr)


def label_names(spec: str | None) -> dict[str, str] | None:
    """``--label-names 0=negative,1=positive`` as a mapping (``None`` when not given).

    Raises:
        ConfigError: a part is not ``RAW=NAME``.
    """
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        raw, sep, name = part.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise ConfigError(f"--label-names wants RAW=NAME pairs like 0=negative, got {part!r}")
        out[raw.strip()] = name.strip()
    return out


def add_data_args(p: argparse.ArgumentParser, split: str) -> None:
    """``--data`` and the options that say how to read it."""
    p.add_argument(
        "--data",
        required=True,
        help="example-reviews (ships with datashunt), an evaluation set (amazon-mds, sst2, "
        "agnews, mr, isear: DATASHUNT_DATA_DIR) or a .csv/.tsv/.jsonl file",
    )
    p.add_argument("--split", default=split, help=f"split to read (default {split})")
    p.add_argument("--text-col", help="text column(s), comma-separated (joined with '. ')")
    p.add_argument("--label-col", help="label column")
    p.add_argument("--label-names", help="map raw labels to names: 0=negative,1=positive")
    p.add_argument("--split-col", help="column holding the split name, if the file has one")
    p.add_argument("--no-header", action="store_true", help="TSV/CSV without a header row")
    p.add_argument("--limit", type=int, help="read at most this many examples")
    p.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of the data file (default utf-8; e.g. latin-1, cp1252, utf-8-sig)",
    )


def read_data(
    args: argparse.Namespace,
    split: str | None,
    labels: Sequence[str] | None = None,
    skip_empty: bool | None = None,
) -> Dataset:
    """The data that :func:`add_data_args` options describe (``split`` of a bundled set;
    ``skip_empty``: see :func:`~datashunt.data.read_dataset`)."""
    known = args.data in KNOWN_DATASETS
    return read_dataset(
        args.data,
        split=split if (known or args.split_col) else None,
        text_col=args.text_col,
        label_col=args.label_col,
        label_names=label_names(args.label_names),
        split_col=args.split_col,
        header=not args.no_header,
        labels=labels,
        limit=args.limit,
        encoding=args.encoding,
        skip_empty=skip_empty,
    )


def existing_gate(path: str) -> str:
    """``--gate``, checked to be a folder before any model code runs.

    Raises:
        ConfigError: no folder there, saying what ``--gate`` takes.
    """
    if not Path(path).expanduser().is_dir():
        raise ConfigError(
            f"no gate folder at {path!r}: --gate takes a folder written by `datashunt "
            "train-gate --out DIR` (or a local Hugging Face classifier); models are never "
            "downloaded at run time"
        )
    return path
