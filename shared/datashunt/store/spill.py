"""The spill journal: rows the database could not take, kept in a local JSONL file.

Each append is fsync'd before the write returns, so a crash loses nothing that was reported
written. Rows carry their uuid primary key: a replay skips the ones the database already has,
so nothing is recorded twice either.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from .connect import is_transient
from .records import RECORD_FIELDS
from .schema import calls

__all__ = ["SpillJournal", "append_synced", "insert_missing"]

log = logging.getLogger("datashunt")


def append_synced(path: Path, text: str) -> None:
    """Append ``text`` and fsync; the file is created readable by its owner only (inputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_line(row: dict[str, Any]) -> str:
    return json.dumps({**row, "created_at": row["created_at"].isoformat()})


def _from_json(data: dict[str, Any]) -> dict[str, Any]:
    row = {name: data.get(name) for name in RECORD_FIELDS}
    if not isinstance(row["id"], str) or not row["route"]:
        raise ValueError("spilled record without id or route")
    row["created_at"] = datetime.fromisoformat(data["created_at"])
    return row


class SpillJournal:
    """A JSONL file of rows waiting for the database, with a count of what it holds.

    ``lock`` serialises appends and replays; one journal belongs to one store object (do not
    share the file between processes).

    Args:
        path: the JSONL file; created on the first append, removed after a replay.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.pending = self._count()

    def _count(self) -> int:
        if not self.path.is_file():
            return 0
        with self.path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Append ``rows`` (synced); returns whether the journal was empty before.

        Raises:
            OSError: the file cannot be written.
        """
        lines = "".join(_to_line(r) + "\n" for r in rows)
        with self.lock:
            append_synced(self.path, lines)
            first = self.pending == 0
            self.pending += len(rows)
        return first

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(the rows, one per id, last copy wins; the lines that are not rows).

        Call with :attr:`lock` held. A line cut short by a crash mid-write is not a row.
        """
        if not self.path.exists():
            return [], []
        rows: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                row = _from_json(json.loads(line))
            except (ValueError, TypeError, KeyError):
                bad.append(line)
                continue
            rows[row["id"]] = row
        return list(rows.values()), bad

    def set_aside(self, bad: list[str], rejected: list[dict[str, Any]]) -> Path:
        """Keep lines and rows that can never be replayed in ``<path>.rejected``; returns it."""
        out = self.path.with_name(self.path.name + ".rejected")
        kept = bad + [_to_line(r) for r in rejected]
        append_synced(out, "\n".join(kept) + "\n")
        return out

    def clear(self) -> None:
        """Forget the replayed rows (call with :attr:`lock` held, after the commit)."""
        self.path.unlink(missing_ok=True)
        self.pending = 0

    def replay(self, engine: sa.Engine, where: str) -> int:
        """Insert the journal's rows that ``engine``'s table lacks, then clear the journal.

        Call with :attr:`lock` held. Returns the number of rows written.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database is still unavailable (rows stay).
        """
        rows, bad = self.read()
        written, rejected = insert_missing(engine, rows) if rows else (0, [])
        if bad or rejected:
            out = self.set_aside(bad, rejected)
            log.error(
                "%d spilled records could not be replayed into %s; kept in %s",
                len(bad) + len(rejected),
                where,
                out,
            )
        self.clear()  # only after the commit: a crash before this replays, and skips, again
        if written:
            log.info("replayed %d spilled records into %s", written, where)
        return written


def insert_missing(
    engine: sa.Engine, rows: list[dict[str, Any]]
) -> tuple[int, list[dict[str, Any]]]:
    """Insert the rows whose id is not in the table yet; returns (written, rejected).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a passing error (locked, down): nothing is lost.
    """
    present: set[str] = set()
    ids = [r["id"] for r in rows]
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            present.update(conn.scalars(sa.select(calls.c.id).where(calls.c.id.in_(chunk))))
    todo = [r for r in rows if r["id"] not in present]
    if not todo:
        return 0, []
    try:
        with engine.begin() as conn:
            conn.execute(calls.insert(), todo)
        return len(todo), []
    except SQLAlchemyError as exc:
        if is_transient(exc):
            raise
    # A row the database refuses for good (e.g. a value too long for its column) must not
    # hold the others back: write them one by one and set the refused ones aside.
    written, rejected = 0, []
    for row in todo:
        try:
            with engine.begin() as conn:
                conn.execute(calls.insert(), [row])
            written += 1
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            rejected.append(row)
    return written, rejected
