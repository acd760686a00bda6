"""The store against a real PostgreSQL (a throwaway cluster on 127.0.0.1): writes from many
threads, odd text, and the server killed mid-run and restarted with no record lost or doubled."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from datashunt import CallRecord, CallStore, Shunt, ShuntPolicy, ShuntResult, StoreError
from datashunt.retry import RetryPolicy
from tests.conftest import FakeLLM, KeywordGate
from tests.support.pgcluster import PostgresCluster

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
