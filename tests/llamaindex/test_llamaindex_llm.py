"""DataShuntLLM: confident calls never reach the wrapped LLM; uncertain ones get the hint."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import MockLLM
from llama_index.core.prompts import PromptTemplate

from datashunt import CallStore, InputError, LLMError, Shunt, ShuntPolicy, ShuntResult
from llamaindex_datashunt import DataShuntLLM
from tests.support.llamaindex_fakes import (  # noqa: F401 - fixtures
    ScriptedLLM,
    ThreadGate,
    llamaindex_sandbox,
    openai_logprobs,
    sentiment_gate,
    temp_store,
    topic_shunt,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


def _llm(
    store: CallStore | None,
    inner: ScriptedLLM | MockLLM,
    gate: ThreadGate | None = None,
    **kw: object,
) -> DataShuntLLM:
    g = gate or sentiment_gate()
    shunt = Shunt(g, ShuntPolicy(labels=g.labels, threshold=0.9), store=store, **kw)  # type: ignore[arg-type]
    return DataShuntLLM(inner, shunt)


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


async def _all_forms(llm: DataShuntLLM, text: str) -> list[str]:
    """The answer text of all eight call forms, in a fixed order."""
    msgs = _user(text)
    out = [llm.chat(msgs).message.content or "", llm.complete(text).text]
    out.append((await llm.achat(msgs)).message.content or "")
    out.append((await llm.acomplete(text)).text)
    out.append("".join(r.delta or "" for r in llm.stream_chat(msgs)))
    out.append("".join(r.delta or "" for r in llm.stream_complete(text)))
    out.append("".join([r.delta or "" async for r in await llm.astream_chat(msgs)]))
    out.append("".join([r.delta or "" async for r in await llm.astream_complete(text)]))
    return out


async def test_confident_calls_never_reach_the_inner_llm(store: CallStore) -> None:
    inner = ScriptedLLM(answer="negative")
    llm = _llm(store, inner)
    assert await _all_forms(llm, "a great blender") == ["positive"] * 8
    assert inner.calls == 0
    assert [r.source for r in store.iter()] == ["small"] * 8


async def test_uncertain_calls_go_to_the_inner_llm_in_every_form(store: CallStore) -> None:
    inner = ScriptedLLM(answer="The answer is negative.")
    llm = _llm(store, inner)
    assert await _all_forms(llm, "it arrived on Tuesday") == ["negative"] * 8
    assert inner.calls == 8
    records = list(store.iter())
    assert len(records) == 8  # each call recorded exactly once
    assert {r.source for r in records} == {"llm"}
    assert {r.response for r in records} == {"The answer is negative."}


async def test_gate_runs_off_the_event_loop() -> None:
    gate = sentiment_gate()
    llm = _llm(None, ScriptedLLM(), gate)
    await llm.achat(_user("good"))
    await llm.acomplete("hmm")
    assert gate.threads and all(t is not threading.current_thread() for t in gate.threads)


def test_chat_injects_candidates_and_hint_into_a_system_message() -> None:
    inner = ScriptedLLM(answer="weather")
    llm = DataShuntLLM(inner, topic_shunt(None))
    resp = llm.chat(_user("what about tomorrow?"))
    assert resp.message.content == "weather"
    system, user = inner.messages[0]
    assert system.role == MessageRole.SYSTEM and user.content == "what about tomorrow?"
    assert "exactly one of these labels: sports, weather." in (system.content or "")  # pruned
    assert "probability 0.45" in (system.content or "")


def test_existing_system_message_is_merged_not_duplicated() -> None:
    inner = ScriptedLLM(answer="positive")
    llm = _llm(None, inner)
    msgs = [ChatMessage(role=MessageRole.SYSTEM, content="You rate reviews."), *_user("hmm")]
    llm.chat(msgs)
    sent = inner.messages[0]
    assert [m.role for m in sent] == [MessageRole.SYSTEM, MessageRole.USER]
    assert (sent[0].content or "").startswith("You rate reviews.\n\nClassify the user's text")
    assert msgs[0].content == "You rate reviews."  # the caller's messages are not mutated


def test_complete_prepends_the_instruction() -> None:
    inner = ScriptedLLM(answer="negative", chat_model=False)
    _llm(None, inner).complete("Review: meh")
    assert inner.prompts[0].startswith("Classify the user's text into exactly one of these labels")
    assert inner.prompts[0].endswith("\n\nReview: meh")


def test_response_carries_the_typed_result_and_a_summary(store: CallStore) -> None:
    lp = openai_logprobs([("negative", -0.1054), ("positive", -2.3026)])
    llm = _llm(store, ScriptedLLM(answer="negative", logprobs=lp))
    resp = llm.chat(_user("hmm"))
    assert isinstance(resp.raw, ShuntResult) and resp.raw.source == "llm"
    summary = resp.additional_kwargs["datashunt"]
    assert summary["route"] == "llm" and summary["gate_confidence"] == pytest.approx(0.5)
    assert summary["llm_confidence"] == pytest.approx(0.9, abs=0.01)
    assert summary["record_id"] == resp.raw.record_id
    (rec,) = list(store.iter())
    assert rec.llm_confidence == pytest.approx(0.9, abs=0.01)
    assert rec.prompt is not None and rec.prompt.startswith("system: Classify")


def test_garbage_answer_falls_back_to_the_gate_label(store: CallStore) -> None:
    llm = _llm(store, MockLLM())  # MockLLM echoes the prompt, which names both labels
    resp = llm.complete("so-so")
    assert resp.text == "negative" and resp.raw.source == "fallback"
    (rec,) = list(store.iter())
    assert rec.parse_ok is False and rec.response is not None


async def test_inner_exception_falls_back_or_raises(store: CallStore) -> None:
    inner = ScriptedLLM(answer=TimeoutError("slow"))
    resp = await _llm(store, inner).achat(_user("hmm"))
    assert resp.message.content == "negative" and resp.raw.error == "TimeoutError: slow"
    strict = _llm(store, inner, on_llm_error="raise")
    with pytest.raises(LLMError, match="slow"):
        strict.chat(_user("hmm"))
    with pytest.raises(LLMError, match="slow"):
        list(strict.stream_complete("hmm"))
    assert [r.error for r in store.iter()] == ["TimeoutError: slow"] * 3


def test_metadata_is_delegated_without_function_calling() -> None:
    meta = _llm(None, ScriptedLLM()).metadata
    assert meta.model_name == "scripted-1" and meta.context_window == 4096
    assert meta.is_chat_model is True and meta.is_function_calling_model is False
    assert DataShuntLLM.class_name() == "DataShuntLLM"


def test_text_from_picks_what_the_gate_sees() -> None:
    def first_user(messages: Sequence[ChatMessage]) -> str:
        return next(m.content or "" for m in messages if m.role == MessageRole.USER)

    g = sentiment_gate()
    shunt = Shunt(g, ShuntPolicy(labels=g.labels, threshold=0.9))
    llm = DataShuntLLM(ScriptedLLM(), shunt, text_from=first_user)
    msgs = [*_user("good"), ChatMessage(role=MessageRole.ASSISTANT, content="ok"), *_user("hm")]
    assert llm.chat(msgs).message.content == "positive"
    assert g.seen[-1] == ["good"]


def test_chat_without_user_text_is_an_input_error() -> None:
    llm = _llm(None, ScriptedLLM())
    with pytest.raises(InputError, match="last user message"):
        llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="hi")])


def test_works_inside_llamaindex_helpers() -> None:
    inner = ScriptedLLM(answer="positive")
    llm = _llm(None, inner)
    assert llm.predict(PromptTemplate("Review: {review}"), review="great stuff") == "positive"
    assert inner.calls == 0


def test_constructor_checks_types() -> None:
    g = sentiment_gate()
    with pytest.raises(TypeError, match="LlamaIndex LLM"):
        DataShuntLLM("gpt", Shunt(g))  # type: ignore[arg-type]
