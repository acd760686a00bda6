"""The call store: every large-model call (and, optionally, every gate-only answer) as a row.

SQLAlchemy Core over any URL; the default is a local SQLite file in WAL mode, which lets
readers run while a writer writes. Writes are short single-row transactions, safe from many
threads; async code uses :meth:`CallStore.aadd`, which runs the write in a worker thread so the
event loop never blocks on disk.

With a ``spill_path``, a write the database cannot take for a passing reason (locked, disk
full, server down) goes to a local JSONL file instead (:mod:`.spill`), and is replayed into
the database by the next successful write (or :meth:`CallStore.flush_spill`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError, StoreError
from .connect import (
    CONNECT_TIMEOUT,
    FileWatch,
    first_line,
    is_transient,
    make_engine,
    storable,
    store_url,
)
from .export import summarise, write_jsonl
from .records import RECORD_FIELDS, CallRecord, StoreInputs, capped
from .schema import calls, ensure_schema
from .spill import SpillJournal

__all__ = ["CallStore", "open_store"]

log = logging.getLogger("datashunt")
_SLOW_FAILURE_S, RETRY_AFTER_S = 0.5, 5.0  # a failure this slow: spill at once for a while


class CallStore:
    """A store of shunt records behind any SQLAlchemy URL.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a path to a SQLite file.
        store_inputs: keep inputs in ``"full"``, as a SHA-256 ``"hash"`` only, or ``"none"``.
            Under ``"hash"`` and ``"none"`` the prompt and messages (which quote the input) are
            not kept either, in the database or in the spill file.
        spill_path: a local JSONL file for records the database cannot take right now (locked,
            disk full, server down); replayed by the next successful write. ``None``: such a
            write raises :class:`StoreError`. One spill file belongs to one store object: do
            not share it between processes.
        timeout: seconds a write waits for a locked SQLite database (or a free pooled
            connection) before it fails (and spills).
        connect_timeout: seconds per attempt to reach a server (PostgreSQL); with a spill file,
            after one slow failure writes spill at once for ``RETRY_AFTER_S`` seconds.
        read_only: only read: no file, folder or table is created, a missing store is a
            :class:`StoreError`, and SQLite files are opened ``mode=ro`` (a 444 file reads).

    Raises:
        ConfigError: a bad argument.
        StoreError: the store cannot be opened (the message says why and what to do).

    Example:
        >>> store = CallStore("runs/c.sqlite", spill_path="runs/c.spill.jsonl")  # doctest: +SKIP
        >>> store.stats()["records"]  # doctest: +SKIP
        0
    """

    def __init__(
        self,
        url: str | Path,
        *,
        store_inputs: StoreInputs = "full",
        spill_path: str | Path | None = None,
        timeout: float = 30.0,
        read_only: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if store_inputs not in ("full", "hash", "none"):
            raise ConfigError(
                f"store_inputs must be 'full', 'hash' or 'none', got {store_inputs!r}"
            )
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        if read_only and spill_path is not None:
            raise ConfigError("a read-only store writes nothing: drop spill_path")
        self.store_inputs = store_inputs
        self.read_only = read_only
        self.url = store_url(url, read_only=read_only)
        self.engine = make_engine(
            self.url, timeout=timeout, read_only=read_only, connect_timeout=connect_timeout
        )
        self._away: tuple[float, str] | None = None  # (until when, why): spill without trying
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._no_nul = self.engine.dialect.name == "postgresql"  # its text cannot hold NUL
        self._spill = SpillJournal(Path(spill_path).expanduser()) if spill_path else None
        self.spill_path = self._spill.path if self._spill else None
        self._schema_lock = threading.Lock()
        self._columns: set[str] | None = None
        t0 = time.monotonic()
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:
            if self._spill is None or not is_transient(exc):
                raise StoreError(f"cannot open the store at {self._safe_url()}: {exc}") from exc
            # A server that is down at start-up must not stop the application: records spill
            # until it is back, and the schema is created on the first write that reaches it.
            log.warning("store %s unavailable at start: %s", self._safe_url(), first_line(exc))
            if time.monotonic() - t0 > _SLOW_FAILURE_S:  # a silent host: no wait per write
                self._away = (time.monotonic() + RETRY_AFTER_S, f"unavailable: {first_line(exc)}")
        # a deleted or replaced SQLite file would take writes into nowhere: each write checks
        self._file = FileWatch.of(self.url) if self.is_sqlite and not read_only else None
        if self.pending and self._columns is not None:
            self._try_flush()

    @property
    def pending(self) -> int:
        """Records in the spill file, not yet in the database."""
        return self._spill.pending if self._spill else 0

    def _gone(self) -> str | None:
        return self._file.gone() if self._file is not None else None

    def _ensure_schema(self) -> set[str]:
        if self._columns is None:
            with self._schema_lock:  # two threads of one process: one creates, one waits
                if self._columns is None:
                    where = self._safe_url()
                    self._columns = ensure_schema(
                        self.engine, read_only=self.read_only, where=where
                    )
        return self._columns

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _row(self, rec: CallRecord) -> dict[str, Any]:
        row = capped({name: getattr(rec, name) for name in RECORD_FIELDS})
        text = rec.input_text
        if text is not None and row["input_hash"] is None:
            raw = text.encode("utf-8", "surrogatepass")
            row["input_hash"] = hashlib.sha256(raw).hexdigest()
        if self.store_inputs != "full":
            row["input_text"] = None
            row["prompt"] = None  # the prompt quotes the input
            row["messages"] = None  # and so do the messages
            if self.store_inputs == "none":
                row["input_hash"] = None
        if row["messages"] is not None:
            row["messages"] = [
                # text is cleaned for the database; an image's {mime, sha256, bytes} list stays JSON
                {
                    k: v if isinstance(v, list) else storable(str(v), self._no_nul)
                    for k, v in m.items()
                }
                for m in row["messages"]
            ]
        return {k: storable(v, self._no_nul) if isinstance(v, str) else v for k, v in row.items()}

    def add(self, record: CallRecord) -> str:
        """Write one record; returns its id.

        Raises:
            StoreError: if the database refuses the write (locked past its timeout, full, down)
                and there is no spill file, or the spill file cannot be written either.
        """
        self._write([record], f"record {record.id}")
        return record.id

    def add_many(self, records: list[CallRecord]) -> list[str]:
        """Write several records in one transaction (all or none); returns their ids.

        Raises:
            StoreError: if the database refuses the write (and it cannot be spilled).
        """
        if records:
            self._write(records, f"{len(records)} records")
        return [r.id for r in records]

    async def aadd(self, record: CallRecord) -> str:
        """:meth:`add` in a worker thread, so the event loop is never blocked by the database."""
        return await asyncio.to_thread(self.add, record)

    def _write(self, records: list[CallRecord], what: str) -> None:
        if self.read_only:
            raise StoreError(
                f"the store at {self._safe_url()} was opened read-only: open it without "
                "read_only=True to write"
            )
        rows = [self._row(r) for r in records]
        away = self._away
        if self._spill is not None and away is not None and time.monotonic() < away[0]:
            # the server just made a write wait and fail: do not make this one wait too
            self._spill_rows(self._spill, rows, away[1])
            return
        gone = self._gone()
        if gone is None:
            t0 = time.monotonic()
            try:
                self._ensure_schema()
                with self.engine.begin() as conn:
                    conn.execute(calls.insert(), rows)
            except SQLAlchemyError as exc:
                reason = f"{exc.__class__.__name__}: {first_line(exc)}"
                if self._spill is None or not is_transient(exc):
                    msg = f"could not write {what} to {self._safe_url()}: {reason}"
                    raise StoreError(msg) from exc
                if time.monotonic() - t0 > _SLOW_FAILURE_S:
                    self._away = (time.monotonic() + RETRY_AFTER_S, reason)
                self._spill_rows(self._spill, rows, reason)
                return
            self._away = None
            gone = self._gone()  # deleted during the write: it went nowhere
        if gone is not None:
            if self._spill is None:
                raise StoreError(
                    f"could not write {what}: {gone}, so the write would be lost; open the "
                    "store again (or give it a spill_path to keep writes while it is away)"
                )
            self._spill_rows(self._spill, rows, gone)
            return
        if self.pending:
            self._try_flush()

    # ---- the spill journal --------------------------------------------------------------------

    def _spill_rows(self, spill: SpillJournal, rows: list[dict[str, Any]], reason: str) -> None:
        try:
            first = spill.append(rows)
        except OSError as exc:
            raise StoreError(
                f"could not write {len(rows)} records to {self._safe_url()} ({reason}) "
                f"nor to the spill file {spill.path}: {exc}"
            ) from exc
        if first:
            log.warning(
                "store %s refused a write (%s); spilling records to %s until it is back",
                self._safe_url(),
                reason,
                spill.path,
            )

    def _try_flush(self) -> None:
        spill = self._spill
        # Another thread already flushing is as good as flushing here.
        if spill is None or not spill.lock.acquire(blocking=False):
            return
        try:
            self._flush_locked(spill)
        except (SQLAlchemyError, OSError, StoreError) as exc:
            log.warning("could not replay spilled records yet: %s", first_line(exc))
        finally:
            spill.lock.release()

    def flush_spill(self) -> int:
        """Write the spilled records to the database, skipping ids already there.

        Returns:
            The number of records written now.

        Raises:
            StoreError: if the database is still unavailable (the records stay spilled).
        """
        spill = self._spill
        if spill is None:
            return 0
        with spill.lock:
            try:
                return self._flush_locked(spill)
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"could not replay {spill.pending} spilled records into "
                    f"{self._safe_url()}: {first_line(exc)}"
                ) from exc

    def _flush_locked(self, spill: SpillJournal) -> int:
        gone = self._gone()
        if gone is not None:  # replayed into a deleted file, the records would be lost
            raise StoreError(f"could not replay {spill.pending} spilled records: {gone}")
        self._ensure_schema()
        return spill.replay(self.engine, self._safe_url())

    # ---- reading ------------------------------------------------------------------------------

    def iter(self, *, route: str | None = None, batch_size: int = 500) -> Iterator[CallRecord]:
        """All records in time order (optionally one route), read in batches."""
        try:
            # an older store opened read-only lacks the newer columns: those read as None
            names = [n for n in RECORD_FIELDS if n in self._ensure_schema()]
            query = sa.select(*(calls.c[n] for n in names))
            query = query.order_by(calls.c.created_at, calls.c.id)
            if route is not None:
                query = query.where(calls.c.route == route)
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch_size).execute(query)
                # closed explicitly, so that a caller stopping early (next(store.iter())) does
                # not leave a PostgreSQL server-side cursor for the garbage collector
                with result:
                    for row in result.mappings():
                        rec = CallRecord(**{k: row[k] for k in names})
                        if rec.created_at.tzinfo is None:  # SQLite drops the zone
                            rec.created_at = rec.created_at.replace(tzinfo=timezone.utc)  # noqa: UP017
                        yield rec
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read {self._safe_url()}: {exc}") from exc

    def count(self, *, route: str | None = None) -> int:
        """Number of records (optionally of one route)."""
        query = sa.select(sa.func.count()).select_from(calls)
        if route is not None:
            query = query.where(calls.c.route == route)
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read {self._safe_url()}: {exc}") from exc

    def export_jsonl(self, path: str | Path) -> int:
        """Write every record as one JSON line; returns the number written."""
        return write_jsonl(self.iter(), path)

    def stats(self) -> dict[str, Any]:
        """Summary figures: records per route, LLM errors, parse failures, tokens, latency."""
        try:
            with self.engine.connect() as conn:
                return summarise(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read {self._safe_url()}: {exc}") from exc

    def close(self) -> None:
        """Replay spilled records if the database is back, then release the connection pool."""
        if self.pending:
            self._try_flush()
        self.engine.dispose()


def open_store(store: CallStore | str | Path | None, **kwargs: Any) -> CallStore | None:
    """Accept a store, a URL or path (opened here with ``kwargs``), or ``None``."""
    if store is None or isinstance(store, CallStore):
        return store
    return CallStore(store, **kwargs)
