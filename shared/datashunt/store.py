"""The call store: every large-model call (and, optionally, every gate-only answer) as a row.

SQLAlchemy Core over any URL; the default is a local SQLite file in WAL mode, which lets
readers run while a writer writes. Writes are short single-row transactions, safe from many
threads; async code uses :meth:`CallStore.aadd`, which runs the write in a worker thread so the
event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from .errors import ConfigError, StoreError

__all__ = ["CallRecord", "CallStore", "StoreInputs", "open_store"]

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

    Example:
        >>> store = CallStore("runs/calls.sqlite")  # doctest: +SKIP
        >>> store.stats()["records"]  # doctest: +SKIP
        0
    """

    def __init__(self, url: str | Path, *, store_inputs: StoreInputs = "full") -> None:
        if store_inputs not in ("full", "hash", "none"):
            raise ConfigError(
                f"store_inputs must be 'full', 'hash' or 'none', got {store_inputs!r}"
            )
        self.store_inputs = store_inputs
        self.url = _url(url)
        try:
            sa_url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"not a database URL or path: {url!r}") from exc
        self.is_sqlite = sa_url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _meta.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self._safe_url()}: {exc}") from exc

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _row(self, rec: CallRecord) -> dict[str, Any]:
        row = {name: getattr(rec, name) for name in _FIELDS}
        text = rec.input_text
        if text is not None and row["input_hash"] is None:
            row["input_hash"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if self.store_inputs != "full":
            row["input_text"] = None
            if self.store_inputs == "none":
                row["input_hash"] = None
                row["prompt"] = None  # the prompt holds the input too
        return row

    def add(self, record: CallRecord) -> str:
        """Write one record; returns its id.

        Raises:
            StoreError: if the database refuses the write (locked past its timeout, full, down).
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(calls.insert().values(**self._row(record)))
        except SQLAlchemyError as exc:
            raise StoreError(
                f"could not write record {record.id} to {self._safe_url()}: "
                f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc
        return record.id

    def add_many(self, records: list[CallRecord]) -> list[str]:
        """Write several records in one transaction (all or none); returns their ids.

        Raises:
            StoreError: if the database refuses the write.
        """
        if not records:
            return []
        try:
            with self.engine.begin() as conn:
                conn.execute(calls.insert(), [self._row(r) for r in records])
        except SQLAlchemyError as exc:
            raise StoreError(
                f"could not write {len(records)} records to {self._safe_url()}: "
                f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc
        return [r.id for r in records]

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
        """Release the connection pool."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes writers wait, not fail.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def open_store(store: CallStore | str | Path | None, **kwargs: Any) -> CallStore | None:
    """Accept a store, a URL or path (opened here), or ``None``."""
    if store is None or isinstance(store, CallStore):
        return store
    return CallStore(store, **kwargs)


def _as_mapping(x: Mapping[str, float] | None) -> dict[str, float] | None:
    return {k: float(v) for k, v in x.items()} if x is not None else None
