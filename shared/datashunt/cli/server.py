"""``datashunt llm-server``: the embedded local LLM, served until Ctrl-C (options pass through
to :func:`datashunt.llm.server_cli.main`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError

__all__ = ["register", "serve"]

#: Every GGUF file starts with these four bytes.
GGUF_MAGIC = b"GGUF"


def _check_model(argv: Sequence[str]) -> None:
    """Refuse a ``--model`` that is not a GGUF file before a server process is started."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--model")
    known, _ = probe.parse_known_args(list(argv))
    if known.model is None:
        return
    path = Path(known.model).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(
            f"model file not found: {path}. Pass an existing GGUF file with --model, or leave "
            "--model out to use the packaged SmolLM2"
        )
    with path.open("rb") as fh:
        head = fh.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise ModelNotFoundError(
            f"{path} is not a GGUF model (it does not start with the GGUF magic bytes): the "
            "local server runs llama.cpp models in GGUF format; convert the model or pass a "
            ".gguf file with --model"
        )


def serve(argv: Sequence[str]) -> int:
    """Run the server with ``argv`` (its own options); returns its exit code."""
    from ..llm import server_cli

    _check_model(argv)
    return int(server_cli.main(list(argv)))


def _cmd_server(args: argparse.Namespace) -> int:
    return serve(args.rest)


def register(sub: Any) -> None:
    """Add ``llm-server`` to the subcommands (for ``--help``; :func:`main` calls :func:`serve`
    directly, so the server's own parser reads every option)."""
    p = sub.add_parser("llm-server", help="serve the embedded local LLM (OpenAI-compatible)")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="--model PATH --port N --n-ctx N --threads N"
    )
    p.set_defaults(func=_cmd_server)
