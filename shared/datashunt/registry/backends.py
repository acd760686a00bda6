"""Where a :class:`~datashunt.registry.GateRegistry` keeps its versions and events.

* :class:`FolderBackend`: ``versions/v0001/`` (the gate's files and ``datashunt_version.json``)
  and ``events.jsonl``, written under a file lock (``filelock``); a version appears by an
  atomic rename, so a reader never sees half of one.
* :class:`SQLBackend`: two tables in any SQLAlchemy database; a version is a ``tar.gz``
  archive, unpacked into a local cache (again by rename) the first time it is loaded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from ..errors import ConfigError, StoreError
from ..store.connect import make_engine
from .versions import GateVersion, RegistryEvent

__all__ = ["Backend", "FolderBackend", "SQLBackend"]

VERSION_FILE = "datashunt_version.json"
_EVENTS = "events.jsonl"
MakeEvent = Callable[[list[RegistryEvent]], RegistryEvent]
#: checks the versions already there, under the backend's lock (raises to refuse the add)
CheckAdd = Callable[[list[GateVersion]], None]
#: told what a read left out: (the version or file, why)
Skip = Callable[[str, str], None]
# what a half-written or hand-edited record raises when parsed
_BROKEN = (ValueError, KeyError, TypeError, ConfigError)


class Backend(Protocol):
    """What a registry needs from where it keeps things."""

    def add(self, meta: GateVersion, src: Path, check: CheckAdd) -> GateVersion: ...
    def versions(self) -> list[GateVersion]: ...
    def path(self, version: str) -> Path: ...
    def events(self) -> list[RegistryEvent]: ...
    def append_event(self, make: MakeEvent) -> RegistryEvent: ...
    def marker(self) -> str: ...
    def close(self) -> None: ...


def _name(n: int) -> str:
    return f"v{n:04d}"


def _version_records(records: list[tuple[str, str]], skip: Skip) -> list[GateVersion]:
    """Parsed version records; an unreadable one is left out and reported, not fatal: a
    broken version that does not serve must not take the registry down."""
    out = []
    for name, raw in records:
        try:
            out.append(GateVersion.from_json(json.loads(raw)))
        except _BROKEN as exc:
            skip(name, f"the record of version {name} is unreadable ({exc}): left out")
    return out


def _event_records(lines: list[str], where: str, skip: Skip) -> list[RegistryEvent]:
    """Parsed events; a torn last one (a write cut short) is left out and reported, a broken
    one before it is an error: the history after it would be a guess."""
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(RegistryEvent.from_json(json.loads(line)))
        except _BROKEN as exc:
            if i < len(lines) - 1:
                raise ConfigError(
                    f"{where}: event {i + 1} of {len(lines)} is unreadable ({exc}): repair or "
                    "remove that line (the events are the champion's history)"
                ) from exc
            skip(where, f"{where}: its last event is torn ({exc}): left out")
    return out


class FolderBackend:
    """A registry in a folder (see the module docstring)."""

    def __init__(self, root: Path, skip: Skip) -> None:
        from filelock import FileLock

        self.root = root
        self.skip = skip
        self._lock = FileLock(str(root / ".lock"), timeout=60)

    def _create(self) -> None:
        """Only writes create the folder: reading a registry that is not there changes nothing."""
        try:
            (self.root / "versions").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the registry folder {self.root}: {exc}") from exc

    def add(self, meta: GateVersion, src: Path, check: CheckAdd) -> GateVersion:
        self._create()
        versions = self.root / "versions"
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=versions))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            with self._lock:
                check(self.versions())
                n = 1 + max((int(p.name[1:]) for p in self._dirs()), default=0)
                meta = replace(meta, version=_name(n))
                (tmp / VERSION_FILE).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
                os.replace(tmp, versions / meta.version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return meta

    def _dirs(self) -> list[Path]:
        if not (self.root / "versions").is_dir():
            return []
        return sorted(
            p
            for p in (self.root / "versions").iterdir()
            if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()
        )

    def versions(self) -> list[GateVersion]:
        records = []
        for d in self._dirs():
            f = d / VERSION_FILE
            try:
                records.append((d.name, f.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue  # not a version (yet)
            except (OSError, UnicodeDecodeError) as exc:
                self.skip(d.name, f"the record of version {d.name} is unreadable ({exc})")
        return _version_records(records, self.skip)

    def path(self, version: str) -> Path:
        return self.root / "versions" / version

    def events(self) -> list[RegistryEvent]:
        f = self.root / _EVENTS
        if not f.is_file():
            return []
        text = f.read_text(encoding="utf-8", errors="replace")
        return _event_records([ln for ln in text.splitlines() if ln.strip()], str(f), self.skip)

    def _cut_torn_tail(self) -> None:
        """Drop a last line without its newline (a write cut short, never acknowledged), so
        that the next event starts a line of its own instead of gluing onto the fragment."""
        f = self.root / _EVENTS
        if not f.is_file():
            return
        raw = f.read_bytes()
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            self.skip(str(f), f"{f}: removed a torn last line ({raw[keep:][:80]!r})")
            with f.open("r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def append_event(self, make: MakeEvent) -> RegistryEvent:
        self._create()
        with self._lock:
            self._cut_torn_tail()
            event = make(self.events())
            with (self.root / _EVENTS).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event.to_json()) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return event

    def close(self) -> None:
        pass

    def marker(self) -> str:
        try:
            st = (self.root / _EVENTS).stat()
        except FileNotFoundError:
            return "0"
        return f"{st.st_size}:{st.st_mtime_ns}"


_META = sa.MetaData()
_VERSIONS = sa.Table(
    "datashunt_gate_versions",
    _META,
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("archive", sa.LargeBinary, nullable=False),
)
_EVENT_TABLE = sa.Table(
    "datashunt_gate_events",
    _META,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("event", sa.Text, nullable=False),
)


def _sorted(versions: list[GateVersion]) -> list[GateVersion]:
    return sorted(versions, key=lambda v: int(v.version[1:]))


class SQLBackend:
    """A registry in a SQLAlchemy database (see the module docstring)."""

    def __init__(self, url: str, skip: Skip, *, cache_dir: str | Path | None = None) -> None:
        self.skip = skip
        self.engine = make_engine(url, timeout=30.0)
        for attempt in range(len(_META.tables) + 1):
            try:
                _META.create_all(self.engine)
                break
            except sa.exc.SQLAlchemyError as exc:
                # two processes opening a new registry at once: one creates a table between
                # the other's check and its CREATE; the next look finds it (once per table)
                if attempt == len(_META.tables) or "already exists" not in str(exc):
                    raise StoreError(f"cannot open the gate registry at {url}: {exc}") from exc
        home = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "datashunt" / "registry"
        self.cache = home / self.engine.url.render_as_string(hide_password=True).replace("/", "_")

    def add(self, meta: GateVersion, src: Path, check: CheckAdd) -> GateVersion:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                tar.add(f, arcname=f.relative_to(src).as_posix())
        blob = buf.getvalue()
        for _ in range(20):  # two writers may pick the same name: the primary key decides
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(_VERSIONS.c.version, _VERSIONS.c.meta)).all()
            # Checked before each try: an add that loses the race for a name (two adds into an
            # empty registry both want v0001) reads the winner and is checked against it. The
            # read is a transaction of its own: SQLite cannot turn two readers into writers.
            check(_sorted(_version_records([(r[0], r[1]) for r in rows], self.skip)))
            n = 1 + max((int(r[0][1:]) for r in rows), default=0)
            meta = replace(meta, version=_name(n))
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _VERSIONS.insert().values(
                            version=meta.version, meta=json.dumps(meta.to_json()), archive=blob
                        )
                    )
            except sa.exc.IntegrityError:
                continue
            return meta
        raise StoreError("could not allocate a version name after 20 tries")

    def versions(self) -> list[GateVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_VERSIONS.c.version, _VERSIONS.c.meta)).all()
        return _sorted(_version_records([(r[0], r[1]) for r in rows], self.skip))

    def path(self, version: str) -> Path:
        target = self.cache / version
        if (target / VERSION_FILE).is_file():
            return target
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_VERSIONS.c.meta, _VERSIONS.c.archive).where(
                    _VERSIONS.c.version == version
                )
            ).one()
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.cache))
        try:
            with tarfile.open(fileobj=io.BytesIO(row.archive), mode="r:gz") as tar:
                if hasattr(tarfile, "data_filter"):  # refuses links and paths out of tmp
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                    tar.extractall(tmp)  # noqa: S202 - our own archive
            (tmp / VERSION_FILE).write_text(row.meta, encoding="utf-8")
            try:
                os.replace(tmp, target)
            except OSError:  # another process unpacked it first
                if not (target / VERSION_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def events(self) -> list[RegistryEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_EVENT_TABLE.c.event).order_by(_EVENT_TABLE.c.seq))
            lines = list(rows.scalars())
        return _event_records(lines, "datashunt_gate_events", self.skip)

    def append_event(self, make: MakeEvent) -> RegistryEvent:
        for _ in range(20):  # the sequence number is the primary key: a race retries
            event = make(self.events())
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _EVENT_TABLE.insert().values(
                            seq=event.seq, event=json.dumps(event.to_json())
                        )
                    )
            except sa.exc.IntegrityError:
                continue
            return event
        raise StoreError("could not append a registry event after 20 tries")

    def marker(self) -> str:
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(_EVENT_TABLE.c.seq))).scalar()
        return str(top or 0)

    def close(self) -> None:
        self.engine.dispose()
