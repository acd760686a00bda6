from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from datashunt import CallRecord, CallStore, ConfigError, StoreError


def _rec(i: int, route: str = "llm", **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "input_text": f"text {i}",
        "gate_label": "positive",
        "gate_confidence": 0.6,
        "gate_probs": {"negative": 0.4, "positive": 0.6},
        "prompt": f"prompt {i}",
        "response": "positive",
        "parsed_label": "positive",
        "parse_ok": True,
        "llm_confidence": 0.9,
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "latency_s": 0.5,
        "model": "m",
    }
    return CallRecord(route=route, **{**fields, **kw})  # type: ignore[arg-type]


def test_roundtrip_stats_export(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "sub" / "calls.sqlite")
    ids = [store.add(_rec(i)) for i in range(3)]
    store.add(_rec(9, route="small", parse_ok=None))
    store.add(_rec(10, error="TimeoutError: slow", parse_ok=False))
    recs = list(store.iter())
    assert [r.id for r in recs[:3]] == ids
    assert recs[0].gate_probs == {"negative": 0.4, "positive": 0.6}
    assert recs[0].created_at.tzinfo is not None
    stats = store.stats()
    assert stats["records"] == 5 and stats["llm_calls"] == 4
    assert stats["llm_errors"] == 1 and stats["unparsed"] == 1
    assert stats["prompt_tokens"] == 50 and stats["llm_rate"] == pytest.approx(0.8)
    assert stats["by_model"] == {"m": 4}
    out = tmp_path / "calls.jsonl"
    assert store.export_jsonl(out) == 5
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["input_text"] == "text 0" and rows[0]["route"] == "llm"
    assert store.count(route="small") == 1


def test_sqlite_is_wal(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_concurrent_thread_writers_lose_nothing(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.add(_rec(i)), range(400)))
    assert store.count() == 400
    assert len({r.id for r in store.iter()}) == 400


async def test_concurrent_async_writers(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    await asyncio.gather(*(store.aadd(_rec(i)) for i in range(200)))
    assert store.count() == 200


@pytest.mark.parametrize(
    ("mode", "has_text", "has_hash"), [("hash", False, True), ("none", False, False)]
)
def test_store_inputs_privacy(tmp_path: Path, mode: str, has_text: bool, has_hash: bool) -> None:
    store = CallStore(tmp_path / "c.sqlite", store_inputs=mode)  # type: ignore[arg-type]
    store.add(_rec(1))
    rec = next(store.iter())
    assert (rec.input_text is not None) is has_text
    assert (rec.input_hash is not None) is has_hash
    if mode == "none":
        assert rec.prompt is None


def test_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CallStore(tmp_path / "c.sqlite", store_inputs="some")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="cannot open"):
        CallStore(f"sqlite:///{tmp_path}/missing-dir/x/c.sqlite")


def test_write_failure_is_a_store_error(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    store.add(_rec(1))
    dup = _rec(2)
    store.add(dup)
    with pytest.raises(StoreError, match=dup.id):
        store.add(dup)  # same primary key
    assert store.count() == 2


def test_add_many_is_one_transaction(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    ids = store.add_many([_rec(i, route="small") for i in range(50)])
    assert len(ids) == 50 and store.count(route="small") == 50 and store.add_many([]) == []
    dup = _rec(99)
    with pytest.raises(StoreError, match="2 records"):
        store.add_many([_rec(100), dup, dup][1:])
    assert store.count() == 50  # all or none


def test_store_api_is_pinned() -> None:
    import datashunt.store

    assert set(datashunt.store.__all__) == {
        "SCHEMA_VERSION",
        "CallRecord",
        "CallRecorder",
        "CallStore",
        "StoreInputs",
        "create_tables",
        "describe_error",
        "open_store",
        "schema_lock",
    }
    assert all(hasattr(datashunt.store, name) for name in datashunt.store.__all__)
    assert datashunt.store.CallStore is CallStore and datashunt.store.CallRecord is CallRecord
