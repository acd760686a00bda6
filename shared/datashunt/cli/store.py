"""``datashunt store stats|export``: read a call store (never create one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StoreError

__all__ = ["register"]


def _writable_out(out: str | None) -> Path:
    """``--out``, checked before the store is read: its folder must exist and take a file."""
    if not out:
        raise ConfigError("store export needs --out FILE.jsonl")
    path = Path(out).expanduser()
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"cannot write {path}: {folder} {what}; create the folder first")
    return path


def _cmd_store(args: argparse.Namespace) -> int:
    from ..store import CallStore

    out = _writable_out(args.out) if args.action == "export" else None
    # Reading commands open read-only: a mistyped path is an error, not a new empty store.
    store = CallStore(args.store, read_only=True)
    try:
        if out is None:
            print(json.dumps(store.stats(), indent=2, default=str))
            return 0
        try:
            n = store.export_jsonl(out)
        except OSError as exc:
            raise StoreError(
                f"cannot write {out}: {exc.strerror or exc}; choose a folder you can write to"
            ) from exc
        print(f"wrote {n} records to {out}")
        return 0
    finally:
        store.close()


def register(sub: Any) -> None:
    """Add ``store`` to the subcommands."""
    p = sub.add_parser("store", help="inspect a call store")
    p.add_argument("action", choices=("stats", "export"))
    p.add_argument("--store", required=True, help="SQLite path or SQLAlchemy URL")
    p.add_argument("--out", help="JSONL file for export")
    p.set_defaults(func=_cmd_store)
