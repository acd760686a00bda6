"""``datashunt predict``: the gate's decision for texts given as arguments or on stdin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InputError
from ..inputs import DEFAULT_MAX_CHARS
from .common import existing_gate

__all__ = ["register"]


def _texts(args: argparse.Namespace) -> list[str]:
    """The inputs, decoded with ``--encoding`` (stdin) and checked against ``--max-chars``."""
    from ..data import decode_bytes

    if args.text:
        numbered = [(f"argument {i}", t) for i, t in enumerate(args.text, 1)]
    else:
        data = decode_bytes(sys.stdin.buffer.read(), args.encoding, "stdin")
        lines = enumerate(data.splitlines(), 1)
        numbered = [(f"stdin line {i}", t) for i, t in lines if t.strip()]
    for where, text in numbered:
        if not text.strip():
            raise InputError(f"{where} is empty: there is nothing to classify")
        if len(text) > args.max_chars:
            raise InputError(
                f"{where} has {len(text):,} characters, over --max-chars {args.max_chars:,}: "
                "shorten it, or raise --max-chars"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # argv bytes that are not the terminal's encoding arrive as lone surrogates
            raise InputError(
                f"{where} is not valid text in this terminal's encoding: pass the texts on "
                "stdin with --encoding (e.g. --encoding latin-1)"
            ) from None
    return [t for _, t in numbered]


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..engine import Shunt

    gate = existing_gate(args.gate)
    texts = _texts(args)
    shunt = Shunt.from_dir(gate, max_chars=args.max_chars)
    for text, d in zip(texts, shunt.decide(texts), strict=True):
        row = {
            "text": text[:80],
            "route": d.route,
            "label": d.label,
            "confidence": round(d.confidence, 4),
            "candidates": list(d.candidates),
            # the decision's receipt: policy version, δ, the guarantee, P(gate wrong)
            "receipt": shunt.receipt_of(d).to_json(),
        }
        print(json.dumps(row, ensure_ascii=False))
    return 0


def register(sub: Any) -> None:
    """Add ``predict`` to the subcommands."""
    p = sub.add_parser("predict", help="print the gate's decision for texts (args or stdin)")
    p.add_argument("--gate", required=True)
    p.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of stdin (default utf-8; e.g. latin-1, cp1252)",
    )
    p.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help=f"refuse longer inputs (default {DEFAULT_MAX_CHARS:,})",
    )
    p.add_argument("text", nargs="*")
    p.set_defaults(func=_cmd_predict)
