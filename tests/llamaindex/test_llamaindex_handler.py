"""DataShuntEventHandler: LlamaIndex's own LLM calls recorded once, off the caller's thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import MockLLM
from llama_index.core.tools.types import ToolMetadata
from llama_index_instrumentation import get_dispatcher, root_dispatcher

from datashunt import CallRecord, CallStore, ConfigError, Shunt, ShuntPolicy, StoreError
from llamaindex_datashunt import (
    DataShuntEventHandler,
    DataShuntLLM,
    DataShuntSelector,
    DataShuntWorkflow,
)
from tests.support.llamaindex_fakes import (  # noqa: F401 - fixtures
    ScriptedLLM,
    llamaindex_sandbox,
    sentiment_gate,
    temp_store,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


@pytest.fixture
def handler(store: CallStore) -> Iterator[DataShuntEventHandler]:
    h = DataShuntEventHandler(store, run_id="obs").attach()
    try:
        yield h
    finally:
        h.close()


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def _records(h: DataShuntEventHandler) -> list[CallRecord]:
    h.flush(timeout=10)
    return list(h.store.iter())


def _shunt(store: CallStore) -> Shunt:
    g = sentiment_gate()
    return Shunt(g, ShuntPolicy(labels=g.labels, threshold=0.9), store=store)


def test_records_a_chat_call_once(handler: DataShuntEventHandler) -> None:
    llm = ScriptedLLM(answer="hello there", usage={"prompt_tokens": 5, "completion_tokens": 2})
    llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="Be brief."), *_user("hi")])
    (rec,) = _records(handler)
    assert (rec.route, rec.source, rec.run_id) == ("llm", "observed", "obs")
    assert rec.input_text == "hi" and rec.prompt == "system: Be brief.\nuser: hi"
    assert rec.response == "hello there" and rec.error is None
    assert (rec.prompt_tokens, rec.completion_tokens, rec.model) == (5, 2, "scripted-1")
    assert rec.latency_s is not None and rec.latency_s >= 0
    assert rec.extra is not None and rec.extra["kind"] == "chat"
    assert rec.extra["llm_class"] == "ScriptedLLM" and rec.extra["span_id"]


def test_records_completion_and_streams(handler: DataShuntEventHandler) -> None:
    llm = ScriptedLLM(answer="done")
    llm.complete("finish this")
    assert "".join(r.delta or "" for r in llm.stream_chat(_user("go"))) == "done"
    recs = _records(handler)
    assert [(r.extra or {}).get("kind") for r in recs] == ["completion", "chat"]
    assert [r.response for r in recs] == ["done", "done"]
    assert recs[0].prompt == "finish this"


def test_custom_llm_chat_via_complete_is_one_call(handler: DataShuntEventHandler) -> None:
    # CustomLLM.chat calls self.complete: two event pairs, one model call.
    MockLLM().chat(_user("echo me"))
    (rec,) = _records(handler)
    assert rec.extra is not None and rec.extra["kind"] == "chat"
    assert rec.response is not None and "echo me" in rec.response


def test_failed_calls_are_recorded_with_the_error(handler: DataShuntEventHandler) -> None:
    llm = ScriptedLLM(answer=ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        llm.chat(_user("x"))
    with pytest.raises(ValueError, match="bad request"):
        list(llm.stream_complete("y"))
    recs = _records(handler)
    assert [r.response for r in recs] == [None, None]
    assert all(r.error is not None and "bad request" in r.error for r in recs)


async def test_async_calls_and_writes_off_the_event_loop(store: CallStore) -> None:
    threads: list[str] = []

    class SpyStore(CallStore):
        def add(self, record: CallRecord) -> str:
            threads.append(threading.current_thread().name)
            return super().add(record)

    spy = SpyStore(Path(store.url.removeprefix("sqlite:///")))
    with DataShuntEventHandler(spy) as h:
        llm = ScriptedLLM(answer="ok")
        await llm.achat(_user("a"))
        await llm.acomplete("b")
        chunks = [r async for r in await llm.astream_chat(_user("c"))]
        assert chunks[-1].message.content == "ok"
    assert spy.count() == 3 and h.store is spy
    assert threads and all(t.startswith("datashunt-handler") for t in threads)


async def test_datashunt_calls_are_not_recorded_twice(
    handler: DataShuntEventHandler, store: CallStore
) -> None:
    inner = ScriptedLLM(answer="negative")
    shunt = _shunt(store)
    llm = DataShuntLLM(inner, shunt)
    llm.chat(_user("hmm"))
    await llm.acomplete("hmm")
    list(llm.stream_chat(_user("hmm")))
    await DataShuntWorkflow(shunt, inner, timeout=10).run(text="hmm")
    choices = [ToolMetadata(name=n, description=n) for n in ("negative", "positive")]
    DataShuntSelector(shunt, inner).select(choices, "hmm")
    await DataShuntSelector(shunt, inner).aselect(choices, "hmm")
    inner.chat(_user("a direct call"))  # not through datashunt: observed
    recs = _records(handler)
    assert inner.calls == 7
    assert [r.source for r in recs].count("llm") == 6
    observed = [r for r in recs if r.source == "observed"]
    assert [r.input_text for r in observed] == ["a direct call"]


def test_attach_detach_and_context_manager(store: CallStore) -> None:
    before = (list(root_dispatcher.event_handlers), list(root_dispatcher.span_handlers))
    h = DataShuntEventHandler(store)
    with h:
        assert h in root_dispatcher.event_handlers
        with pytest.raises(ConfigError, match="already attached"):
            h.attach()
    assert (root_dispatcher.event_handlers, root_dispatcher.span_handlers) == before
    ScriptedLLM().chat(_user("after detach"))
    h.flush()
    assert store.count() == 0
    h.detach()  # idempotent


def test_attach_to_a_named_dispatcher(store: CallStore) -> None:
    d = get_dispatcher("llama_index.core.llms")
    h = DataShuntEventHandler(store).attach(d)
    try:
        assert h in d.event_handlers and h not in root_dispatcher.event_handlers
    finally:
        h.close()
    assert h not in d.event_handlers


def test_store_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenStore(CallStore):
        def add(self, record: CallRecord) -> str:
            raise StoreError("disk full")

    with (
        DataShuntEventHandler(BrokenStore(tmp_path / "b.sqlite")) as h,
        caplog.at_level(logging.WARNING, logger="datashunt"),
    ):
        resp = ScriptedLLM(answer="fine").chat(_user("x"))
        h.flush()
    assert resp.message.content == "fine"
    assert "disk full" in caplog.text


def test_a_store_path_is_opened(tmp_path: Path) -> None:
    h = DataShuntEventHandler(tmp_path / "calls.sqlite")
    assert h.store.count() == 0
    with pytest.raises(ConfigError, match="needs a store"):
        DataShuntEventHandler(None)  # type: ignore[arg-type]


async def test_recorded_messages_are_what_the_llm_received(
    handler: DataShuntEventHandler,
) -> None:
    llm = ScriptedLLM(answer="ok")
    convo = [
        ChatMessage(role=MessageRole.SYSTEM, content="Sort reviews of {shop}, «Ünïcode»."),
        *_user("first, with a comma"),
        ChatMessage(role=MessageRole.ASSISTANT, content="positive"),
        *_user("second"),
    ]
    llm.chat(convo)
    list(llm.stream_chat(convo[-2:]))
    await llm.achat(_user("only me"))
    llm.complete("a bare completion")
    recs = _records(handler)
    chats = [r for r in recs if (r.extra or {}).get("kind") == "chat"]
    received = [[{"role": m.role.value, "content": m.content} for m in ms] for ms in llm.messages]
    assert [r.messages for r in chats] == received
    assert chats[0].prompt == "\n".join(f"{m['role']}: {m['content']}" for m in received[0])
    assert chats[0].input_text == "second"
    assert chats[2].prompt == "only me"  # one user message: its text
    (completion,) = [r for r in recs if (r.extra or {}).get("kind") == "completion"]
    assert completion.messages == [{"role": "user", "content": "a bare completion"}]
    assert completion.prompt == "a bare completion" == llm.prompts[-1]
