"""The ``datashunt`` command line: train-gate, calibrate, predict, store, monitor, distill,
gates, loop, bench, batch, llm-server.

One module per command group registers its subcommands; :func:`main` runs one and turns a
user's error into one ``datashunt: error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .common import report_errors

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors (a missing or malformed option) in the CLI's one-line form;
    subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"datashunt: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    # Imported here, not above: `python -m datashunt.cli.distill` must find its module unloaded.
    from . import (
        batch,
        bench,
        bootstrap,
        distill,
        gates,
        monitor,
        predict,
        server,
        store,
        train,
    )

    parser = _Parser(
        prog="datashunt",
        description="A small local classifier in front of any chat model: train and calibrate "
        "the gate, predict, inspect the call store, distil, benchmark, serve a local LLM.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (train, predict, store, monitor, distill, gates, bootstrap, bench, batch, server):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for a user's error, with its message)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["llm-server"]:  # its options belong to the server's own parser
        from .server import serve

        return report_errors(lambda: serve(args[1:]))
    parsed = build_parser().parse_args(args)
    return report_errors(lambda: parsed.func(parsed))
