"""``datashunt bench``: the quality and cost table (options and run in
:mod:`datashunt.benchmark.cli`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..benchmark.cli import run

    return int(run(args))


def register(sub: Any) -> None:
    """Add ``bench`` to the subcommands."""
    from ..benchmark.cli import add_arguments

    p = sub.add_parser("bench", help="quality and cost table: gate, LLM, shunt, routers")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)
