"""The store's spill file: a locked or full SQLite database loses no record and records none
twice; the answers still reach the caller. (PostgreSQL going down: tests/integration.)"""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from datashunt import CallRecord, CallStore, Shunt, ShuntPolicy, StoreError
from datashunt.llm import RetryPolicy
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")


def _store(tmp_path: Path, **kw: Any) -> CallStore:
    kw.setdefault("spill_path", tmp_path / "spill.jsonl")
    return CallStore(tmp_path / "c.sqlite", timeout=0.1, **kw)


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's view: an exclusive transaction holding the database."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("COMMIT")
        conn.close()


@contextmanager
def disk_full(store: CallStore) -> Iterator[None]:
    """SQLite's own "database or disk is full": no page may be added."""

    def cap(conn: Any, _rec: Any) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")

    store.engine.dispose()
    sa.event.listen(store.engine, "connect", cap)
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", cap)
        store.engine.dispose()


def test_locked_database_spills_then_replays_on_the_next_write(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.add(CallRecord(route="llm", input_text="before"))
    with locked(tmp_path / "c.sqlite"):
        spilled = [store.add(CallRecord(route="llm", input_text=f"during {i}")) for i in range(3)]
        assert store.pending == 3 and (tmp_path / "spill.jsonl").is_file()
    last = store.add(CallRecord(route="small", input_text="after"))
    assert store.pending == 0 and not (tmp_path / "spill.jsonl").exists()
    ids = [r.id for r in store.iter()]
    assert sorted(ids) == sorted([first, *spilled, last]) and len(set(ids)) == 5
    during = {r.input_text for r in store.iter()}
    assert {"during 0", "during 1", "during 2"} <= during


def test_disk_full_spills_and_nothing_is_lost(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with disk_full(store):
        ids = store.add_many([CallRecord(route="small", input_text="x" * 5000) for _ in range(20)])
        assert store.pending == 20 and store.count() == 0
    assert store.flush_spill() == 20
    assert store.pending == 0 and sorted(r.id for r in store.iter()) == sorted(ids)


def test_spill_file_is_synced_private_and_honours_store_inputs(tmp_path: Path) -> None:
    secret = "my card number is 4111 1111 1111 1111"
    store = _store(tmp_path, store_inputs="hash")
    with locked(tmp_path / "c.sqlite"):
        store.add(CallRecord(route="llm", input_text=secret, prompt=f"Text: {secret}"))
    spill = tmp_path / "spill.jsonl"
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    raw = spill.read_text()
    assert "4111" not in raw and json.loads(raw)["input_hash"]


def test_replay_skips_records_already_present(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rec = CallRecord(route="llm", input_text="committed, but the client saw an error")
    store.add(rec)
    # the same row also reached the spill file (its commit was in doubt), plus a torn last line
    row = {**rec.to_json(), "input_hash": None}
    (tmp_path / "spill.jsonl").write_text(json.dumps(row) + '\n{"id": "cut sho')
    again = _store(tmp_path)  # a restart: replays what the last run left behind
    assert again.pending == 0 and again.count() == 1
    assert "cut sho" in (tmp_path / "spill.jsonl.rejected").read_text()


def test_restart_replays_leftovers_and_close_flushes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with locked(tmp_path / "c.sqlite"):
        store.add(CallRecord(route="llm"))
        store.add(CallRecord(route="llm"))
    assert store.pending == 2
    store.close()  # the database is free again: close replays
    assert CallStore(tmp_path / "c.sqlite").count() == 2


def test_without_spill_path_the_error_is_raised(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite", timeout=0.1)
    with locked(tmp_path / "c.sqlite"), pytest.raises(StoreError, match="database is locked"):
        store.add(CallRecord(route="llm"))


def test_permanent_errors_are_not_spilled(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rec = CallRecord(route="llm")
    store.add(rec)
    with pytest.raises(StoreError, match="IntegrityError"):
        store.add(rec)  # the same primary key: writing it again would fail again
    assert store.pending == 0


def test_shunt_answers_while_the_store_is_locked_and_records_everything(tmp_path: Path) -> None:
    store = _store(tmp_path)
    shunt = Shunt(
        KeywordGate(), ShuntPolicy(labels=LABELS), llm=FakeLLM("negative"), store=store,
        retry=RetryPolicy.none(),
    )  # fmt: skip
    texts = [f"plain text {i}" for i in range(6)] + ["good", "awful"]
    with locked(tmp_path / "c.sqlite"):
        results = shunt.run_batch(texts)
    assert [r.label for r in results] == ["negative"] * 6 + ["positive", "negative"]  # type: ignore[union-attr]
    assert all(r.record_id for r in results) and store.pending == 8  # type: ignore[union-attr]
    shunt.run("great")
    assert store.pending == 0 and store.count() == 9
    assert store.count(route="llm") == 6
