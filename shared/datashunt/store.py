"""The call store: every large-model call (and, optionally, every gate-only answer) as a row.

SQLAlchemy Core over any URL; the default is a local SQLite file in WAL mode, which lets
readers run while a writer writes. Writes are short single-row transactions, safe from many
threads; async code uses :meth:`CallStore.aadd`, which runs the write in a worker thread so the
event loop never blocks on disk.

With a ``spill_path``, a write the database cannot take for a passing reason (locked, disk
full, server down) goes to a local JSONL file instead, fsync'd, and is replayed into the
database by the next successful write (or :meth:`CallStore.flush_spill`). Records carry a uuid
primary key, so a replay skips the ones already there: nothing is recorded twice or lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from .errors import ConfigError, StoreError

__all__ = ["CallRecord", "CallStore", "StoreInputs", "open_store"]

log = logging.getLogger("datashunt")

StoreInputs = Literal["full", "hash", "none"]

_meta = sa.MetaData()
calls = sa.Table(
    "datashunt_calls",
    _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("route", sa.String(8), nullable=False),
    sa.Column("source", sa.String(16)),
    sa.Column("model", sa.String(200)),
    sa.Column("input_text", sa.Text),
    sa.Column("input_hash", sa.String(64), index=True),
    sa.Column("gate_label", sa.String(200)),
    sa.Column("gate_confidence", sa.Float),
    sa.Column("gate_probs", sa.JSON),
    sa.Column("candidates", sa.JSON),
    sa.Column("prompt", sa.Text),
    sa.Column("response", sa.Text),
    sa.Column("parsed_label", sa.String(200)),
    sa.Column("parse_ok", sa.Boolean),
    sa.Column("parse_reason", sa.Text),
    sa.Column("llm_confidence", sa.Float),
    sa.Column("llm_probs", sa.JSON),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("latency_s", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("extra", sa.JSON),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)  # noqa: UP017 - keeps Python 3.10 working


@dataclass
class CallRecord:
    """One row of the store. Only ``route`` is required; the rest is filled when known."""

    route: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=_now)
    run_id: str | None = None
    source: str | None = None
    model: str | None = None
    input_text: str | None = None
    input_hash: str | None = None
    gate_label: str | None = None
    gate_confidence: float | None = None
    gate_probs: dict[str, float] | None = None
    candidates: list[str] | None = None
    prompt: str | None = None
    response: str | None = None
    parsed_label: str | None = None
    parse_ok: bool | None = None
    parse_reason: str | None = None
    llm_confidence: float | None = None
    llm_probs: dict[str, float] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (time as ISO 8601)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


_FIELDS = tuple(f.name for f in fields(CallRecord))


def _url(url_or_path: str | Path) -> str:
    s = str(url_or_path)
    if "://" in s:
        return s
    p = Path(s).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"


class CallStore:
    """A store of shunt records behind any SQLAlchemy URL.

    Args:
        url: a SQLAlchemy URL (``postgresql+psycopg://...``) or a path to a SQLite file.
        store_inputs: keep inputs in ``"full"``, as a SHA-256 ``"hash"`` only, or ``"none"``.
            Under ``"hash"`` and ``"none"`` the prompt (which quotes the input) is not kept
            either, in the database or in the spill file.
        spill_path: a local JSONL file for records the database cannot take right now (locked,
            disk full, server down); replayed by the next successful write. ``None``: such a
            write raises :class:`StoreError`. One spill file belongs to one store object: do
            not share it between processes.
        timeout: seconds a write waits for a locked SQLite database, or for a PostgreSQL
            connection, before it fails (and spills).

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
    ) -> None:
        if store_inputs not in ("full", "hash", "none"):
            raise ConfigError(
                f"store_inputs must be 'full', 'hash' or 'none', got {store_inputs!r}"
            )
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        self.store_inputs = store_inputs
        self.url = _url(url)
        try:
            sa_url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"not a database URL or path: {url!r}") from exc
        backend = sa_url.get_backend_name()
        self.is_sqlite = backend == "sqlite"
        self._no_nul = backend == "postgresql"  # PostgreSQL text cannot hold NUL characters
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": timeout, "check_same_thread": False}
        elif sa_url.get_driver_name() in ("psycopg", "psycopg2"):  # libpq's option
            kwargs["connect_args"] = {"connect_timeout": max(1, round(timeout))}
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.is_sqlite:
            busy_ms = int(timeout * 1000)
            sa.event.listen(
                self.engine, "connect", lambda conn, rec: _sqlite_pragmas(conn, rec, busy_ms)
            )
        self.spill_path = Path(spill_path).expanduser() if spill_path is not None else None
        self._spill_lock = threading.Lock()
        self._schema_lock = threading.Lock()
        self._pending = _count_lines(self.spill_path)
        self._schema_ready = False
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:
            if self.spill_path is None or not _transient(exc):
                raise StoreError(f"cannot open the store at {self._safe_url()}: {exc}") from exc
            # A server that is down at start-up must not stop the application: records spill
            # until it is back, and the schema is created on the first write that reaches it.
            log.warning("store %s unavailable at start: %s", self._safe_url(), _first_line(exc))
        if self._pending and self._schema_ready:
            self._try_flush()

    @property
    def pending(self) -> int:
        """Records in the spill file, not yet in the database."""
        return self._pending

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:  # two threads creating the table at once would collide
            if not self._schema_ready:
                _meta.create_all(self.engine)
                self._schema_ready = True

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _row(self, rec: CallRecord) -> dict[str, Any]:
        row = {name: getattr(rec, name) for name in _FIELDS}
        text = rec.input_text
        if text is not None and row["input_hash"] is None:
            raw = text.encode("utf-8", "surrogatepass")
            row["input_hash"] = hashlib.sha256(raw).hexdigest()
        if self.store_inputs != "full":
            row["input_text"] = None
            row["prompt"] = None  # the prompt quotes the input
            if self.store_inputs == "none":
                row["input_hash"] = None
        return {k: _storable(v, self._no_nul) if isinstance(v, str) else v for k, v in row.items()}

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

    def _write(self, records: list[CallRecord], what: str) -> None:
        rows = [self._row(r) for r in records]
        try:
            self._ensure_schema()
            with self.engine.begin() as conn:
                conn.execute(calls.insert(), rows)
        except SQLAlchemyError as exc:
            reason = f"{exc.__class__.__name__}: {_first_line(exc)}"
            if self.spill_path is None or not _transient(exc):
                raise StoreError(f"could not write {what} to {self._safe_url()}: {reason}") from exc
            self._spill(rows, reason)
            return
        if self._pending:
            self._try_flush()

    # ---- the spill file -----------------------------------------------------------------------

    def _spill(self, rows: list[dict[str, Any]], reason: str) -> None:
        assert self.spill_path is not None  # noqa: S101 - callers check
        lines = "".join(json.dumps(_jsonable(r)) + "\n" for r in rows)
        try:
            with self._spill_lock:
                _append_synced(self.spill_path, lines)
                first = self._pending == 0
                self._pending += len(rows)
        except OSError as exc:
            raise StoreError(
                f"could not write {len(rows)} records to {self._safe_url()} ({reason}) "
                f"nor to the spill file {self.spill_path}: {exc}"
            ) from exc
        if first:
            log.warning(
                "store %s refused a write (%s); spilling records to %s until it is back",
                self._safe_url(),
                reason,
                self.spill_path,
            )

    def _try_flush(self) -> None:
        # Another thread already flushing is as good as flushing here.
        if not self._spill_lock.acquire(blocking=False):
            return
        try:
            self._flush_locked()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not replay spilled records yet: %s", _first_line(exc))
        finally:
            self._spill_lock.release()

    def flush_spill(self) -> int:
        """Write the spilled records to the database, skipping ids already there.

        Returns:
            The number of records written now.

        Raises:
            StoreError: if the database is still unavailable (the records stay spilled).
        """
        if self.spill_path is None:
            return 0
        with self._spill_lock:
            try:
                return self._flush_locked()
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"could not replay {self._pending} spilled records into "
                    f"{self._safe_url()}: {_first_line(exc)}"
                ) from exc

    def _flush_locked(self) -> int:
        path = self.spill_path
        if path is None or not path.exists():
            self._pending = 0
            return 0
        rows: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                row = _from_json(json.loads(line))
            except (ValueError, TypeError, KeyError):
                bad.append(line)  # a line cut short by a crash mid-write
                continue
            rows[row["id"]] = row
        self._ensure_schema()
        written, rejected = self._insert_missing(list(rows.values()))
        if bad or rejected:
            kept = bad + [json.dumps(_jsonable(r)) for r in rejected]
            _append_synced(path.with_name(path.name + ".rejected"), "\n".join(kept) + "\n")
            log.error(
                "%d spilled records could not be replayed into %s; kept in %s.rejected",
                len(kept),
                self._safe_url(),
                path,
            )
        path.unlink()  # only after the commit: a crash before this replays, and skips, again
        self._pending = 0
        if written:
            log.info("replayed %d spilled records into %s", written, self._safe_url())
        return written

    def _insert_missing(self, rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Insert the rows whose id is not in the table yet; returns (written, rejected)."""
        present: set[str] = set()
        ids = [r["id"] for r in rows]
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                present.update(conn.scalars(sa.select(calls.c.id).where(calls.c.id.in_(chunk))))
        todo = [r for r in rows if r["id"] not in present]
        if not todo:
            return 0, []
        try:
            with self.engine.begin() as conn:
                conn.execute(calls.insert(), todo)
            return len(todo), []
        except SQLAlchemyError as exc:
            if _transient(exc):
                raise
        # A row the database refuses for good (e.g. a value too long for its column) must not
        # hold the others back: write them one by one and set the refused ones aside.
        written, rejected = 0, []
        for row in todo:
            try:
                with self.engine.begin() as conn:
                    conn.execute(calls.insert(), [row])
                written += 1
            except SQLAlchemyError as exc:
                if _transient(exc):
                    raise
                rejected.append(row)
        return written, rejected

    async def aadd(self, record: CallRecord) -> str:
        """:meth:`add` in a worker thread, so the event loop is never blocked by the database."""
        return await asyncio.to_thread(self.add, record)

    def iter(self, *, route: str | None = None, batch_size: int = 500) -> Iterator[CallRecord]:
        """All records in time order (optionally one route), read in batches."""
        query = sa.select(calls).order_by(calls.c.created_at, calls.c.id)
        if route is not None:
            query = query.where(calls.c.route == route)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch_size).execute(query)
                # closed explicitly, so that a caller stopping early (next(store.iter())) does
                # not leave a PostgreSQL server-side cursor for the garbage collector
                with result:
                    for row in result.mappings():
                        rec = CallRecord(**{k: row[k] for k in _FIELDS})
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
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def export_jsonl(self, path: str | Path) -> int:
        """Write every record as one JSON line; returns the number written."""
        n = 0
        with Path(path).open("w", encoding="utf-8") as fh:
            for rec in self.iter():
                fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
                n += 1
        return n

    def stats(self) -> dict[str, Any]:
        """Summary figures: records per route, LLM errors, parse failures, tokens, latency."""
        c = calls.c
        llm = c.route == "llm"
        query = sa.select(
            sa.func.count().label("records"),
            sa.func.sum(sa.case((llm, 1), else_=0)).label("llm_calls"),
            sa.func.sum(sa.case((llm & c.error.is_not(None), 1), else_=0)).label("llm_errors"),
            sa.func.sum(sa.case((llm & c.parse_ok.is_(False), 1), else_=0)).label("unparsed"),
            sa.func.sum(c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(c.completion_tokens).label("completion_tokens"),
            sa.func.avg(sa.case((llm, c.latency_s))).label("mean_latency_s"),
            sa.func.avg(c.llm_confidence).label("mean_llm_confidence"),
            sa.func.min(c.created_at).label("first"),
            sa.func.max(c.created_at).label("last"),
        )
        models = sa.select(c.model, sa.func.count()).where(llm).group_by(c.model)
        try:
            with self.engine.connect() as conn:
                row = dict(conn.execute(query).mappings().one())
                by_model = {str(m): int(n) for m, n in conn.execute(models)}
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read {self._safe_url()}: {exc}") from exc
        out: dict[str, Any] = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()
        }
        for k in (
            "records",
            "llm_calls",
            "llm_errors",
            "unparsed",
            "prompt_tokens",
            "completion_tokens",
        ):
            out[k] = int(out[k] or 0)
        out["llm_rate"] = out["llm_calls"] / out["records"] if out["records"] else None
        out["by_model"] = by_model
        return out

    def close(self) -> None:
        """Replay spilled records if the database is back, then release the connection pool."""
        if self._pending:
            self._try_flush()
        self.engine.dispose()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: str, no_nul: bool) -> str:
    """``value`` as every backend can hold it: lone surrogates (not encodable as UTF-8) and,
    for PostgreSQL, NUL characters become U+FFFD."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _SURROGATE.sub("\ufffd", value)
    return value.replace("\x00", "\ufffd") if no_nul and "\x00" in value else value


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def _transient(exc: SQLAlchemyError) -> bool:
    """Whether a database error may pass: locked, disk full, server down or connection lost.

    Data and integrity errors are not: writing the same row again would fail again.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa.exc.OperationalError
        | sa.exc.InterfaceError
        | sa.exc.DisconnectionError
        | sa.exc.TimeoutError,
    )


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": row["created_at"].isoformat()}


def _from_json(data: dict[str, Any]) -> dict[str, Any]:
    row = {name: data.get(name) for name in _FIELDS}
    if not isinstance(row["id"], str) or not row["route"]:
        raise ValueError("spilled record without id or route")
    row["created_at"] = datetime.fromisoformat(data["created_at"])
    return row


def _append_synced(path: Path, text: str) -> None:
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


def _count_lines(path: Path | None) -> int:
    if path is None or not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_ms: int = 30_000) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes writers wait, not fail.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def open_store(store: CallStore | str | Path | None, **kwargs: Any) -> CallStore | None:
    """Accept a store, a URL or path (opened here), or ``None``."""
    if store is None or isinstance(store, CallStore):
        return store
    return CallStore(store, **kwargs)
