"""The store's schema: safe first opens from many processes, versioned migrations of stores
written by older releases, read-only opens, and the errors a mistyped path or URL gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from datashunt import CallRecord, CallStore, ConfigError, StoreError
from datashunt.store import SCHEMA_VERSION, create_tables
from tests.support.stores import columns, create_old_store, open_concurrently, schema_version

PROCESSES, TRIALS = 3, 10


def _url(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    urls = [_url(tmp_path / f"trial{i}" / "calls.sqlite") for i in range(TRIALS)]
    assert open_concurrently(urls, PROCESSES) == []
    for url in urls:
        assert CallStore(url).count() == PROCESSES
        assert schema_version(url) == str(SCHEMA_VERSION)


def test_processes_migrating_an_old_store_at_once_all_succeed(tmp_path: Path) -> None:
    urls = [_url(tmp_path / f"trial{i}" / "calls.sqlite") for i in range(TRIALS)]
    for url in urls:
        create_old_store(url)
    assert open_concurrently(urls, PROCESSES) == []
    for url in urls:
        assert "messages" in columns(url) and schema_version(url) == str(SCHEMA_VERSION)
        assert CallStore(url).count() == PROCESSES + 1


def test_an_old_store_is_migrated_and_read_and_written(tmp_path: Path) -> None:
    url = _url(tmp_path / "old.sqlite")
    old_id = create_old_store(url)
    assert "messages" not in columns(url) and schema_version(url) is None
    store = CallStore(url)
    assert "messages" in columns(url) and schema_version(url) == str(SCHEMA_VERSION)
    (old,) = store.iter()
    assert (old.id, old.input_text, old.prompt) == (old_id, "an old input", "an old prompt")
    assert old.messages is None
    sent = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    new_id = store.add(CallRecord(route="llm", prompt="system: Be brief.\nuser: hi", messages=sent))
    assert {r.id: r.messages for r in store.iter()} == {old_id: None, new_id: sent}
    assert store.stats()["records"] == 2
    store.close()
    assert CallStore(url).count() == 2  # opening a current store again changes nothing


def test_an_old_store_opened_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    url = _url(tmp_path / "old.sqlite")
    create_old_store(url)
    store = CallStore(tmp_path / "old.sqlite", read_only=True)
    (old,) = store.iter()
    assert old.messages is None and old.response == "positive" and store.count() == 1
    assert "messages" not in columns(url) and schema_version(url) is None  # nothing migrated


def test_a_store_of_a_newer_release_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    CallStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE datashunt_meta SET value = '99' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match="newer datashunt.*version 99.*upgrade datashunt"):
            CallStore(path, read_only=read_only)


def test_messages_round_trip_and_are_dropped_with_the_inputs(tmp_path: Path) -> None:
    sent = [{"role": "user", "content": "my card is 4111 {and} \u00e9\U0001f642"}]
    full = CallStore(tmp_path / "full.sqlite")
    full.add(CallRecord(route="llm", input_text="x", prompt="p", messages=sent))
    assert next(full.iter()).messages == sent
    for mode in ("hash", "none"):
        store = CallStore(tmp_path / f"{mode}.sqlite", store_inputs=mode)  # type: ignore[arg-type]
        store.add(CallRecord(route="llm", input_text="x", prompt="p", messages=sent))
        rec = next(store.iter())
        assert rec.messages is None and rec.prompt is None and rec.input_text is None


def test_read_only_never_creates_and_reads_a_444_file(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "calls.sqlite"
    for target in (missing, f"sqlite:///{missing}", tmp_path / "absent.sqlite"):
        with pytest.raises(StoreError, match="no store at .*reading never creates one"):
            CallStore(target, read_only=True)
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "c.sqlite"
    writer = CallStore(path)
    writer.add(CallRecord(route="llm", model="m"))
    writer.close()
    path.chmod(0o444)
    store = CallStore(path, read_only=True)
    assert store.count() == 1 and store.stats()["by_model"] == {"m": 1}
    assert [r.model for r in store.iter()] == ["m"]
    with pytest.raises(StoreError, match="opened read-only"):
        store.add(CallRecord(route="llm"))
    # mode=ro: SQLite itself refuses writes (even for root, whom file modes do not stop)
    with pytest.raises(sa.exc.OperationalError, match="readonly"), store.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE x (a INTEGER)")
    with pytest.raises(ConfigError, match="spill_path"):
        CallStore(path, read_only=True, spill_path=tmp_path / "s.jsonl")


def test_an_empty_database_opened_read_only_is_no_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match="holds no datashunt store"):
        CallStore(path, read_only=True)


def test_a_folder_that_cannot_be_created_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StoreError, match="cannot create the folder .*a file is in the way"):
        CallStore(tmp_path / "file" / "sub" / "c.sqlite")

    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(StoreError, match="Permission denied.*choose a folder you can write to"):
        CallStore(tmp_path / "locked" / "c.sqlite")


def test_an_unknown_scheme_names_the_scheme(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown database scheme 'foo'.*sqlite:///PATH"):
        CallStore("foo://bar")
    with pytest.raises(ConfigError, match="not a database URL"):
        CallStore("://nothing")


def test_export_into_a_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    with pytest.raises(StoreError, match="cannot write .*missing.*folder that exists"):
        store.export_jsonl(tmp_path / "missing" / "out.jsonl")


def test_create_tables_beside_the_store_is_idempotent(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    extra = sa.Table("beside", sa.MetaData(), sa.Column("k", sa.String(8), primary_key=True))
    create_tables(store.engine, extra)
    create_tables(store.engine, extra)
    assert "beside" in sa.inspect(store.engine).get_table_names()
