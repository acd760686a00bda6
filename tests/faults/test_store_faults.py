"""Issue 27, items 6 and 8: a store whose SQLite file is deleted after it opened it, and a
PostgreSQL host that accepts connections and never answers."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datashunt import CallStore, StoreError
from datashunt.store import CallRecord


def _rec(i: int) -> CallRecord:
    return CallRecord(route="llm", input_text=f"text {i}", response="positive")


def test_a_deleted_sqlite_file_fails_loudly_instead_of_losing_writes(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    store = CallStore(path)
    store.add(_rec(0))
    for f in tmp_path.glob("calls.sqlite*"):
        f.unlink()  # rm calls.sqlite (and its WAL) while the store is open
    with pytest.raises(StoreError, match="calls.sqlite was deleted after the store opened it"):
        store.add(_rec(1))
    path.write_bytes(b"")  # another file at the same path is not the store either
    with pytest.raises(StoreError, match="replaced by another file"):
        store.add(_rec(2))


def test_a_deleted_sqlite_file_spills_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, spill = tmp_path / "calls.sqlite", tmp_path / "spill.jsonl"
    store = CallStore(path, spill_path=spill)
    store.add(_rec(0))
    for f in tmp_path.glob("calls.sqlite*"):
        f.unlink()
    with caplog.at_level(logging.WARNING, "datashunt"):
        ids = [store.add(_rec(i)) for i in range(1, 21)]
    assert store.pending == 20 and "was deleted" in caplog.text
    fresh = CallStore(path, spill_path=spill)  # a new store at the path takes them in
    assert fresh.pending == 0 and {r.id for r in fresh.iter()} == set(ids)


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung PostgreSQL)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_a_silent_postgres_host_fails_fast_and_spills_at_once(
    silent_host: int, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://u:p@127.0.0.1:{silent_host}/db"
    t0 = time.perf_counter()
    with pytest.raises(StoreError, match="cannot open the store"):
        CallStore(url)
    assert time.perf_counter() - t0 < 8  # 2 s per attempt, libpq tries twice; was 30 s
    t0 = time.perf_counter()
    store = CallStore(url, spill_path=tmp_path / "spill.jsonl")
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.add(_rec(1))
    store.add(_rec(2))
    wrote = time.perf_counter() - t0
    assert store.pending == 2
    assert opened < 8 and wrote < 1.0, (opened, wrote)  # was 30 s each


def test_the_default_connect_timeout_is_a_few_seconds() -> None:
    import inspect

    assert inspect.signature(CallStore).parameters["connect_timeout"].default <= 5


def test_a_huge_answer_is_cut_and_the_record_says_so(tmp_path: Path) -> None:
    from datashunt.store.records import MAX_RESPONSE_CHARS

    store = CallStore(tmp_path / "calls.sqlite")
    huge = "positive " * 600_000  # 5.4 MB
    rid = store.add(CallRecord(route="llm", response=huge, extra={"attempts": 1}))
    rec = next(r for r in store.iter() if r.id == rid)
    assert rec.response == huge[:MAX_RESPONSE_CHARS]
    assert rec.extra == {"attempts": 1, "response_truncated": True, "response_chars": len(huge)}
    assert sum(f.stat().st_size for f in tmp_path.glob("calls.sqlite*")) < 1_000_000
