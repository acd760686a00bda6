"""From a path or URL to a SQLAlchemy engine, and how the store tells database errors apart."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import ConfigError, StoreError

__all__ = [
    "CONNECT_TIMEOUT",
    "FileWatch",
    "first_line",
    "is_transient",
    "make_engine",
    "storable",
    "store_url",
]

_SCHEMES = "a path to a SQLite file, sqlite:///PATH, or postgresql+psycopg://USER@HOST/DB"


def store_url(url_or_path: str | Path, *, read_only: bool = False) -> str:
    """The SQLAlchemy URL of a store: URLs pass through, a path becomes a SQLite URL.

    Opened for writing, the path's folder is created; read-only, nothing is.

    Raises:
        StoreError: the folder cannot be created, or (read-only) the file does not exist.
    """
    s = str(url_or_path)
    if "://" in s:
        return s
    path = Path(s).expanduser()
    if read_only:
        if not path.is_file():
            raise StoreError(f"no store at {path}: check the path (reading never creates one)")
        return _sqlite_url(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            why = "a file is in the way"
        raise StoreError(
            f"cannot create the folder {path.parent} for the store {path} ({why}): "
            "choose a folder you can write to, or create it first"
        ) from exc
    return _sqlite_url(path)


def _sqlite_url(path: Path) -> str:
    # rendered by SQLAlchemy, which escapes what a URL would misread ("?", "#", "%")
    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def _read_only_sqlite(url: sa.URL) -> sa.URL:
    """The same SQLite file opened with ``mode=ro``: a file without write permission (444)
    can be read, and a missing one is an error instead of a new, empty database."""
    db = url.database or ""
    if db in ("", ":memory:") or db.startswith("file:"):
        return url  # nothing on disk to protect, or already a URI the user wrote
    if not Path(db).is_file():
        raise StoreError(f"no store at {db}: check the path (reading never creates one)")
    uri = "file:" + urllib.parse.quote(str(Path(db).absolute()))
    return url.set(database=uri).update_query_dict({"mode": "ro", "uri": "true"})


#: Seconds per attempt to reach a database server (libpq may try twice: with and without
#: TLS). Short: a host that accepts and never answers must not hold every write for long.
CONNECT_TIMEOUT = 2.0


def make_engine(
    url: str, *, timeout: float, read_only: bool = False, connect_timeout: float = CONNECT_TIMEOUT
) -> sa.Engine:
    """A pooled engine for ``url``; SQLite in WAL mode with a busy timeout of ``timeout``; a
    server (PostgreSQL) given ``connect_timeout`` seconds per connection attempt.

    Raises:
        ConfigError: ``url`` is not a URL.
        StoreError: no SQLAlchemy dialect for its scheme, or its driver is not installed.
    """
    try:
        sa_url = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL or path: {url!r}") from exc
    try:
        dialect = sa_url.get_dialect()
    except sa.exc.NoSuchModuleError as exc:
        raise StoreError(
            f"unknown database scheme {sa_url.drivername!r} in {_safe(sa_url)}: use {_SCHEMES}"
        ) from exc
    backend = dialect.name
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": timeout, "check_same_thread": False}
        if read_only:
            sa_url = _read_only_sqlite(sa_url)
    elif dialect.driver in ("psycopg", "psycopg2"):  # libpq's options
        kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
        if read_only:  # the server refuses writes, whatever the user's rights
            kwargs["connect_args"]["options"] = "-c default_transaction_read_only=on"
    try:
        engine = sa.create_engine(sa_url, **kwargs)
    except ImportError as exc:
        raise StoreError(
            f"the driver for {sa_url.drivername!r} is not installed ({exc}): install it "
            f"(for PostgreSQL: pip install 'datashunt[postgres]'), or use {_SCHEMES}"
        ) from exc
    if backend == "sqlite":
        busy_ms = int(timeout * 1000)
        sa.event.listen(
            engine,
            "connect",
            lambda conn, _rec: _sqlite_pragmas(conn, busy_ms, wal=not read_only),
        )
    return engine


def _safe(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: Any, busy_ms: int, *, wal: bool) -> None:
    cur = dbapi_conn.cursor()
    try:
        # busy_timeout makes writers wait, not fail; WAL lets readers proceed during a write.
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        if wal:
            _set_wal(cur, busy_ms / 1000)
            cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _set_wal(cur: Any, timeout: float) -> None:
    # Two processes switching a new file to WAL at once: SQLite answers "database is locked"
    # to one of them at once, without calling the busy handler, so wait here instead.
    deadline = time.monotonic() + timeout
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: str, no_nul: bool) -> str:
    """``value`` as every backend can hold it: lone surrogates (not encodable as UTF-8) and,
    for PostgreSQL, NUL characters become U+FFFD."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _SURROGATE.sub("\ufffd", value)
    return value.replace("\x00", "\ufffd") if no_nul and "\x00" in value else value


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy appends SQL and a link)."""
    return (str(exc).splitlines() or [""])[0]


def is_transient(exc: sa.exc.SQLAlchemyError) -> bool:
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


class FileWatch:
    """Notices that the SQLite file a store opened was deleted or replaced.

    SQLite writes to the file it opened: unlinked under it, every write still "succeeds"
    into an inode nobody can read again. A store checks :meth:`gone` around each write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ident = self._ident()

    @classmethod
    def of(cls, url: str) -> FileWatch | None:
        """A watch on the SQLite database file of ``url`` (``None``: in memory, a URI)."""
        db = sa.engine.make_url(url).database
        if not db or db == ":memory:" or db.startswith("file:"):
            return None
        return cls(Path(db))

    def _ident(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def gone(self) -> str | None:
        """Why the file at the path is no longer the one opened, if it is not."""
        if self.ident is None:
            return None
        now = self._ident()
        if now == self.ident:
            return None
        what = "deleted" if now is None else "replaced by another file"
        return f"{self.path} was {what} after the store opened it"
