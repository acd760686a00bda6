"""CallRecorder: the one recorder of observed LLM calls, framework-free."""

from __future__ import annotations

import ast
import logging
import math
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from datashunt import CallRecord, CallStore, ConfigError, LLMReply, StoreError
from datashunt.adapters import Message
from datashunt.store import CallRecorder

SENT = [Message("system", "Answer with one label."), Message("user", "so so")]
LP: list[Mapping[str, Any]] = [
    {
        "token": "negative",
        "logprob": math.log(0.8),
        "top_logprobs": [
            {"token": "negative", "logprob": math.log(0.8)},
            {"token": "positive", "logprob": math.log(0.2)},
        ],
    }
]


@pytest.fixture
def store(tmp_path: Path) -> CallStore:
    return CallStore(tmp_path / "c.sqlite")


def test_a_call_is_recorded_with_the_exact_messages(store: CallStore) -> None:
    rec = CallRecorder(store, source="callback", labels=["negative", "positive"], run_id="r1")
    rec.start("k", SENT, model="configured", gate_label="positive", gate_confidence=0.55,
              candidates=("negative", "positive"), extra={"span": 7})  # fmt: skip
    reply = LLMReply("negative", logprobs=LP, prompt_tokens=9, completion_tokens=1, model="m-1")
    written = rec.end("k", reply)
    (got,) = store.iter()
    assert written is not None and got.id == written.id
    assert got.messages == [m.to_json() for m in SENT]
    assert got.prompt == "system: Answer with one label.\nuser: so so"
    assert (got.source, got.run_id, got.route, got.model) == ("callback", "r1", "llm", "m-1")
    assert got.input_text == "so so" and got.response == "negative"
    assert (got.parsed_label, got.parse_ok) == ("negative", True)
    assert got.llm_confidence == pytest.approx(0.8)
    assert (got.gate_label, got.gate_confidence) == ("positive", 0.55)
    assert got.candidates == ["negative", "positive"] and got.extra == {"span": 7}
    assert (got.prompt_tokens, got.completion_tokens) == (9, 1)
    assert got.latency_s is not None and got.latency_s >= 0
    assert rec.end("k", reply) is None  # written once
    assert store.count() == 1


def test_one_user_message_is_the_prompt_and_models_fall_back(store: CallStore) -> None:
    rec = CallRecorder(store, source="observed")
    rec.start(1, [Message("user", "finish this")], model="configured")
    rec.end(1, LLMReply("done"), model="reported")
    rec.start(2, [Message("user", "x")], model="configured")
    rec.end(2, LLMReply("done"))
    first, second = store.iter()
    assert first.prompt == "finish this" and first.input_text == "finish this"
    assert (first.model, second.model) == ("reported", "configured")
    assert first.parse_ok is None  # no labels: no parsing


def test_failures_name_the_error_and_keep_the_model(store: CallStore) -> None:
    rec = CallRecorder(store, source="callback")
    errors: list[BaseException | str] = [TimeoutError("timed"), ValueError("ValueError: x"), ""]
    for key, error in enumerate(errors):
        rec.start(key, SENT, model="configured")
        rec.fail(key, error)
    assert [r.error for r in store.iter()] == [
        "TimeoutError: timed",
        "ValueError: x",
        "the LLM call failed",
    ]
    assert {r.model for r in store.iter()} == {"configured"}
    assert rec.fail("never started", RuntimeError("x")) is None


def test_skipped_calls_and_calls_nested_in_them(store: CallStore) -> None:
    rec = CallRecorder(store, source="observed")
    rec.skip("outer")
    assert rec.tracks("outer") and not rec.tracks("other")
    assert rec.end("outer", LLMReply("x")) is None and not rec.tracks("outer")
    rec.start("same", SENT)
    rec.skip("same")  # a nested start under the same key: the first end writes the call
    assert rec.end("same", LLMReply("x")) is not None
    assert store.count() == 1


def test_abandoned_calls_are_forgotten_beyond_max_pending(store: CallStore) -> None:
    rec = CallRecorder(store, source="observed", max_pending=2)
    for key in range(3):
        rec.start(key, SENT)
    assert not rec.tracks(0) and rec.tracks(1) and rec.tracks(2)
    with pytest.raises(ConfigError, match="max_pending"):
        CallRecorder(store, source="x", max_pending=0)
    with pytest.raises(ConfigError, match="needs a store"):
        CallRecorder(None, source="x")  # type: ignore[arg-type]


def test_many_threads_each_call_written_once(store: CallStore) -> None:
    rec = CallRecorder(store, source="callback")

    def one(i: int) -> None:
        rec.start(i, [Message("user", f"t{i}")])
        rec.end(i, LLMReply(f"a{i}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    recs = list(store.iter())
    assert len(recs) == 200 and all(r.response == "a" + r.prompt[1:] for r in recs)  # type: ignore[index]


def test_background_writes_leave_the_callers_thread(tmp_path: Path) -> None:
    threads: list[str] = []

    class Spy(CallStore):
        def add(self, record: CallRecord) -> str:
            threads.append(threading.current_thread().name)
            return super().add(record)

    rec = CallRecorder(Spy(tmp_path / "c.sqlite"), source="observed", background=True)
    for key in range(5):
        rec.start(key, SENT)
        rec.end(key, LLMReply("x"))
    rec.flush(timeout=10)
    rec.close()
    assert len(threads) == 5 and all(t.startswith("datashunt-handler") for t in threads)


async def test_async_end_and_fail(store: CallStore) -> None:
    rec = CallRecorder(store, source="callback", labels=["negative", "positive"])
    rec.start("a", SENT)
    rec.start("b", SENT)
    await rec.aend("a", LLMReply("positive"))
    await rec.afail("b", TimeoutError("slow"))
    assert {(r.parsed_label, r.error) for r in store.iter()} == {
        ("positive", None),
        (None, "TimeoutError: slow"),
    }


def test_store_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(CallStore):
        def add(self, record: CallRecord) -> str:
            raise StoreError("disk full")

    rec = CallRecorder(Broken(tmp_path / "c.sqlite"), source="callback")
    rec.start("k", SENT)
    with caplog.at_level(logging.WARNING, logger="datashunt"):
        assert rec.end("k", LLMReply("x")) is not None
    assert "disk full" in caplog.text


def test_the_recorder_knows_no_framework() -> None:
    import datashunt.store.recorder as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and not {m for m in imported if m.startswith(("langchain", "llama_index"))}
