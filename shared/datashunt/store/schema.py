"""The store's tables, its schema version, and the migrations from older releases.

Creating or migrating the schema runs in one transaction that first takes a database-wide
lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two processes opening a
new store at the same moment do not both try to create its tables: the second waits, then
finds them. The version lives in ``datashunt_meta``; a store written by a release before it
existed (no meta table) is version 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError

__all__ = [
    "SCHEMA_VERSION",
    "calls",
    "create_tables",
    "ensure_schema",
    "meta",
    "metadata",
    "schema_lock",
]

#: The version this release writes. 1: the first release; 2: ``messages`` added.
SCHEMA_VERSION = 2

metadata = sa.MetaData()

calls = sa.Table(
    "datashunt_calls",
    metadata,
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
    sa.Column("messages", sa.JSON),
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

meta = sa.Table(
    "datashunt_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

_VERSION_KEY = "schema_version"
# Any fixed 64-bit number: the advisory lock that serialises schema changes in PostgreSQL.
_PG_LOCK_KEY = 0x64617461_73687400


def _add_column(conn: sa.Connection, table: sa.Table, name: str) -> None:
    """``ALTER TABLE ... ADD COLUMN`` unless the column is there (an interrupted migration)."""
    if name in {c["name"] for c in sa.inspect(conn).get_columns(table.name)}:
        return
    column = table.c[name]
    quote = conn.dialect.identifier_preparer.quote
    kind = column.type.compile(dialect=conn.dialect)
    # identifiers and type come from the table definition above, never from input
    conn.exec_driver_sql(
        f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} {kind}"  # noqa: S608
    )


#: ``MIGRATIONS[v]`` takes a store from version ``v`` to ``v + 1``.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    1: lambda conn: _add_column(conn, calls, "messages"),
}


@contextmanager
def schema_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction holding the database's schema lock; commits when the block ends.

    Use it for any ``CREATE`` or ``ALTER`` on a store's database (the LLM answer cache does),
    so that processes starting together never race to create the same table.
    """
    with engine.connect() as conn:
        backend = conn.dialect.name
        if backend == "sqlite":
            # takes the write lock now; a second opener waits for it (busy_timeout)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif backend == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        yield conn
        conn.commit()


def create_tables(engine: sa.Engine, *tables: sa.Table) -> None:
    """Create ``tables`` (with their indexes) if they are missing, under :func:`schema_lock`.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: as the database raised it (callers wrap it).
    """
    try:
        with schema_lock(engine) as conn:
            for table in tables:
                table.create(conn, checkfirst=True)
    except SQLAlchemyError:
        # A backend without a schema lock may see another process create the table between
        # the check and the CREATE: that is success too.
        if not _all_exist(engine, tables):
            raise


def _all_exist(engine: sa.Engine, tables: tuple[sa.Table, ...]) -> bool:
    names = set(sa.inspect(engine).get_table_names())
    return all(t.name in names for t in tables)


def _read_version(conn: sa.Connection, tables: set[str]) -> int:
    if meta.name not in tables:
        return 1  # written before the meta table existed
    value = conn.scalar(sa.select(meta.c.value).where(meta.c.key == _VERSION_KEY))
    try:
        return int(value) if value is not None else 1
    except ValueError as exc:
        raise StoreError(f"the store's schema version is not a number: {value!r}") from exc


def _write_version(conn: sa.Connection, version: int) -> None:
    meta.create(conn, checkfirst=True)
    conn.execute(meta.delete().where(meta.c.key == _VERSION_KEY))
    conn.execute(meta.insert().values(key=_VERSION_KEY, value=str(version)))


def _check(conn: sa.Connection, *, read_only: bool, where: str) -> tuple[bool, int]:
    """(whether the calls table exists, the stored schema version), or StoreError."""
    tables = set(sa.inspect(conn).get_table_names())
    if calls.name not in tables:
        if read_only:
            raise StoreError(
                f"{where} holds no datashunt store (no table {calls.name}): check the path or "
                "URL, or write a record to it first"
            )
        return False, SCHEMA_VERSION
    version = _read_version(conn, tables)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {where} was written by a newer datashunt (schema version {version}; "
            f"this release knows up to {SCHEMA_VERSION}): upgrade datashunt to open it"
        )
    return True, version


def ensure_schema(engine: sa.Engine, *, read_only: bool = False, where: str = "") -> set[str]:
    """Create a new store's tables, or migrate an older one; returns the calls table's columns.

    Read-only, nothing is created or migrated: the columns an older store lacks are simply
    not read.

    Raises:
        StoreError: the database holds no store (read-only) or one of a newer release.
        sqlalchemy.exc.SQLAlchemyError: as the database raised it (callers wrap it).
    """
    where = where or engine.url.render_as_string(hide_password=True)
    if read_only:
        with engine.connect() as conn:
            _check(conn, read_only=True, where=where)
            return {c["name"] for c in sa.inspect(conn).get_columns(calls.name)}
    with engine.connect() as conn:  # the common case, without taking the write lock
        exists, version = _check(conn, read_only=False, where=where)
    if not exists or version < SCHEMA_VERSION:
        with schema_lock(engine) as conn:
            exists, version = _check(conn, read_only=False, where=where)  # again, locked
            if not exists:
                metadata.create_all(conn, tables=[calls, meta])
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            if not exists or version < SCHEMA_VERSION:
                _write_version(conn, SCHEMA_VERSION)
    return {c.name for c in calls.columns}
