"""``datashunt bench``: the quality and cost table (options and run in
`datashunt.cli.bench_run`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench_run import run

    return int(run(args))


def register(sub: Any) -> None:
    """Add ``bench`` to the subcommands."""
    from .bench_run import add_arguments

    p = sub.add_parser("bench", help="quality and cost table: gate, LLM, shunt, routers")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)
