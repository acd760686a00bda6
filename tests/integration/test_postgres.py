"""The store against a real PostgreSQL (a throwaway cluster on 127.0.0.1): writes from many
threads, odd text, and the server killed mid-run and restarted with no record lost or doubled."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.pgcluster import PostgresCluster
from datashunt import CallRecord, CallStore, Shunt, ShuntPolicy, ShuntResult, StoreError
from datashunt.llm import RetryPolicy
from datashunt.store import SCHEMA_VERSION
from tests.conftest import FakeLLM, KeywordGate
from tests.support.stores import columns, create_old_store, open_concurrently, schema_version

pytestmark = pytest.mark.postgres
LABELS = ("negative", "positive")


def test_roundtrip_concurrency_and_odd_text(pg_url: str) -> None:
    store = CallStore(pg_url)
    odd = "nul\x00 byte, lone \ud800 surrogate, émoji 🙂, {braces}"
    first = store.add(CallRecord(route="llm", input_text=odd, gate_probs={"a": 0.5}, parse_ok=True))
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: store.add(CallRecord(route="small", input_text=f"t{i}")), range(200))
        )
    assert store.count() == 201 and store.count(route="small") == 200
    rec = next(r for r in store.iter() if r.id == first)
    # PostgreSQL text holds neither NUL nor lone surrogates: both become U+FFFD, the rest stays
    assert rec.input_text == "nul\ufffd byte, lone \ufffd surrogate, émoji 🙂, {braces}"
    assert rec.gate_probs == {"a": 0.5} and rec.created_at.tzinfo is not None
    assert store.stats()["records"] == 201
    store.close()


def test_kill_the_database_mid_run_and_lose_nothing(
    pg_cluster: PostgresCluster, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CallStore(pg_url, spill_path=tmp_path / "spill.jsonl", timeout=2)
    llm = FakeLLM("negative", delay=0.01)
    shunt = Shunt(
        KeywordGate(), ShuntPolicy(labels=LABELS), llm=llm, store=store,
        max_concurrency=4, retry=RetryPolicy.none(),
    )  # fmt: skip
    texts = [f"plain text number {i}" for i in range(300)]  # all uncertain: 300 LLM records
    downtime: list[float] = []

    def killer() -> None:
        while store.count() < 60:
            time.sleep(0.01)
        t0 = time.perf_counter()
        pg_cluster.kill()
        time.sleep(0.5)
        pg_cluster.start()
        downtime.append(time.perf_counter() - t0)

    thread = threading.Thread(target=killer)
    thread.start()
    with caplog.at_level(logging.WARNING, logger="datashunt"):
        results = shunt.run_batch(texts)
    thread.join(timeout=60)
    assert downtime, "the database was never killed"
    assert "spilling records" in caplog.text  # the outage did happen during the run
    assert all(isinstance(r, ShuntResult) and r.record_id for r in results)
    assert not any("store_error" in r.extra for r in results)  # type: ignore[union-attr]
    store.flush_spill()
    assert store.pending == 0
    ids = [r.id for r in store.iter()]
    store.close()
    assert len(ids) == 300 and len(set(ids)) == 300
    assert set(ids) == {r.record_id for r in results}  # type: ignore[union-attr]


def test_database_down_at_start(pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    url = pg_cluster.create_database()
    pg_cluster.kill()
    try:
        with pytest.raises(StoreError, match="cannot open the store"):
            CallStore(url, timeout=1)  # no spill file: an error, as before
        store = CallStore(url, spill_path=tmp_path / "spill.jsonl", timeout=1)
        res = Shunt(KeywordGate(), llm=FakeLLM("positive"), store=store).run_batch(["x", "good"])
        assert [r.label for r in res] == ["positive", "positive"]  # type: ignore[union-attr]
        assert store.pending == 2
    finally:
        pg_cluster.start()
    store.add(CallRecord(route="llm"))  # back: the schema is created and the spill replayed
    assert store.pending == 0 and store.count() == 3
    store.close()


def test_processes_opening_new_and_old_stores_at_once(pg_cluster: PostgresCluster) -> None:
    # the advisory lock: no "relation already exists" / duplicate pg_type key on a first open
    fresh = [pg_cluster.create_database() for _ in range(5)]
    old = [pg_cluster.create_database() for _ in range(5)]
    for url in old:
        create_old_store(url)
    assert open_concurrently(fresh + old, 3) == []
    for url in fresh + old:
        assert schema_version(url) == str(SCHEMA_VERSION) and "messages" in columns(url)
        store = CallStore(url)
        assert store.count() == (3 if url in fresh else 4)
        store.close()


def test_an_old_store_is_migrated(pg_url: str) -> None:
    old_id = create_old_store(pg_url)
    read_only = CallStore(pg_url, read_only=True)
    assert [r.id for r in read_only.iter()] == [old_id] and "messages" not in columns(pg_url)
    with pytest.raises(sa.exc.DBAPIError, match="read-only"), read_only.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE x (a integer)")
    read_only.close()
    store = CallStore(pg_url)
    sent = [{"role": "user", "content": "nul\x00 and émoji 🙂"}]
    new_id = store.add(CallRecord(route="llm", messages=sent))
    got = {r.id: r.messages for r in store.iter()}
    assert got == {old_id: None, new_id: [{"role": "user", "content": "nul\ufffd and émoji 🙂"}]}
    store.close()


def test_gate_registry_on_postgres(pg_url: str, tiny_bert: Path, tmp_path: Path) -> None:
    """Two processes' worth of registries on one PostgreSQL database agree on the champion."""
    import shutil

    from datashunt import ShuntPolicy
    from datashunt.registry import GateRegistry

    gate = tmp_path / "gate"
    shutil.copytree(tiny_bert, gate)
    ShuntPolicy(labels=("negative", "positive"), threshold=0.8).save(gate)
    a = GateRegistry(pg_url, cache_dir=tmp_path / "a")
    b = GateRegistry(pg_url, cache_dir=tmp_path / "b")
    a.promote(a.add(gate).version)
    b.promote(b.add(gate, parent="v0001").version)
    assert a.champion() == b.champion() == "v0002"
    assert a.rollback().version == "v0001" and b.champion() == "v0001"
    gate_b, policy = b.load("v0002")
    assert tuple(gate_b.labels) == ("negative", "positive") and policy.threshold == 0.8
    a.close()
    b.close()
