"""DataShuntWorkflow: classify, then the gate or the LLM; progress on the event stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

from datashunt import CallStore, LLMError, Shunt, ShuntPolicy, ShuntResult
from llamaindex_datashunt import (
    ConfidentEvent,
    DataShuntWorkflow,
    ShuntProgressEvent,
    UncertainEvent,
)
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


def _shunt(store: CallStore | None, gate: ThreadGate | None = None, **kw: object) -> Shunt:
    g = gate or sentiment_gate()
    policy = ShuntPolicy(labels=g.labels, threshold=0.9)
    return Shunt(g, policy, store=store, **kw)  # type: ignore[arg-type]


async def _run(wf: Workflow, **kw: object) -> tuple[ShuntResult, list[Event]]:
    handler = wf.run(**kw)
    events = [ev async for ev in handler.stream_events()]
    return await handler, events


def _stages(events: list[Event]) -> list[str]:
    return [e.stage for e in events if isinstance(e, ShuntProgressEvent)]


async def test_confident_input_is_answered_by_the_gate(store: CallStore) -> None:
    gate, llm = sentiment_gate(), ScriptedLLM()
    wf = DataShuntWorkflow(_shunt(store, gate), llm, timeout=10)
    result, events = await _run(wf, text="a great product")
    assert isinstance(result, ShuntResult)
    assert (result.label, result.route, result.source) == ("positive", "small", "small")
    assert llm.calls == 0
    assert _stages(events) == ["classified", "answered_by_gate"]
    assert gate.threads[0] is not threading.current_thread()  # inference off the event loop
    assert [r.route for r in store.iter()] == ["small"]


async def test_uncertain_input_goes_to_the_llm_with_the_shunt_prompt(store: CallStore) -> None:
    llm = ScriptedLLM(answer="negative")
    wf = DataShuntWorkflow(_shunt(store, prompt_mode="both"), llm, timeout=10)
    result, events = await _run(wf, text="it arrived", run_id="run-7")
    assert (result.label, result.source) == ("negative", "llm")
    assert llm.calls == 1
    sent = llm.messages[0]
    assert len(sent) == 1 and sent[0].role.value == "user"
    assert "one of: negative, positive" in llm.prompts[0]
    assert "A smaller model labelled this text" in llm.prompts[0]
    assert _stages(events) == ["classified", "asking_llm", "llm_answered"]
    asking = [e for e in events if isinstance(e, ShuntProgressEvent)][1]
    assert asking.candidates == ["negative", "positive"] and asking.route == "llm"
    (rec,) = list(store.iter())
    assert rec.run_id == "run-7" and rec.response == "negative" and rec.source == "llm"


async def test_pruned_candidates_reach_the_llm() -> None:
    llm = ScriptedLLM(answer="weather")
    result = await DataShuntWorkflow(topic_shunt(None), llm, timeout=10).run(text="tomorrow?")
    assert result.label == "weather"
    assert "one of: sports, weather." in llm.prompts[0]


async def test_garbage_answer_falls_back_to_the_gate(store: CallStore) -> None:
    llm = ScriptedLLM(answer="no idea, sorry")
    result, events = await _run(DataShuntWorkflow(_shunt(store), llm, timeout=10), text="hmm")
    assert result.source == "fallback" and result.label == "negative"
    last = [e for e in events if isinstance(e, ShuntProgressEvent)][-1]
    assert last.stage == "llm_answered" and "from fallback" in last.message
    (rec,) = list(store.iter())
    assert rec.parse_ok is False and rec.response == "no idea, sorry"


async def test_llm_exception_falls_back_or_raises(store: CallStore) -> None:
    llm = ScriptedLLM(answer=ConnectionError("refused"))
    result = await DataShuntWorkflow(_shunt(store), llm, timeout=10).run(text="hmm")
    assert result.source == "fallback" and result.error == "ConnectionError: refused"
    strict = DataShuntWorkflow(_shunt(store, on_llm_error="raise"), llm, timeout=10)
    with pytest.raises(LLMError, match="refused"):
        await strict.run(text="hmm")
    assert [r.error for r in store.iter()] == ["ConnectionError: refused"] * 2


async def test_logprobs_give_llm_confidence(store: CallStore) -> None:
    lp = openai_logprobs([("positive", -0.2231), ("negative", -1.6094)])
    llm = ScriptedLLM(
        answer="positive", logprobs=lp, usage={"prompt_tokens": 30, "completion_tokens": 1}
    )
    result, events = await _run(DataShuntWorkflow(_shunt(store), llm, timeout=10), text="hmm")
    assert result.llm_confidence == pytest.approx(0.8, abs=0.01)
    *_, done = [e for e in events if isinstance(e, ShuntProgressEvent)]
    # the last progress event carries the final answer, C_l for the confidence
    assert (done.stage, done.label, done.route) == ("llm_answered", "positive", "llm")
    assert done.confidence == result.llm_confidence
    assert done.candidates == list(result.decision.candidates)
    (rec,) = list(store.iter())
    assert rec.llm_confidence == pytest.approx(0.8, abs=0.01)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.model) == (30, 1, "scripted-1")


async def test_completion_llm_gets_the_prompt_text() -> None:
    llm = ScriptedLLM(answer="positive", chat_model=False)
    result = await DataShuntWorkflow(_shunt(None), llm, timeout=10).run(text="hmm")
    assert result.source == "llm" and llm.prompts[0].startswith("Classify this text")


async def test_mock_llm_echo_is_unparseable_and_falls_back() -> None:
    result = await DataShuntWorkflow(_shunt(None), MockLLM(), timeout=10).run(text="hmm")
    assert result.source == "fallback" and result.parsed is not None
    assert result.parsed.reason.startswith("ambiguous")


async def test_events_carry_typed_decisions_and_requests() -> None:
    seen: list[Event] = []

    class Spy(DataShuntWorkflow):
        @step
        async def ask_llm(self, ctx: Context, ev: UncertainEvent) -> StopEvent:
            seen.append(ev)
            return await super().ask_llm(ctx, ev)

        @step
        async def answer_small(self, ctx: Context, ev: ConfidentEvent) -> StopEvent:
            seen.append(ev)
            return await super().answer_small(ctx, ev)

    wf = Spy(_shunt(None), ScriptedLLM(answer="positive"), timeout=10)
    await wf.run(text="good")
    await wf.run(text="hmm")
    confident, uncertain = seen
    assert isinstance(confident, ConfidentEvent) and confident.decision.route == "small"
    assert isinstance(uncertain, UncertainEvent) and uncertain.request.decision.route == "llm"


# ---- as a building block -------------------------------------------------------------------------


class Routed(Event):
    label: str
    text: str


class Ticketing(Workflow):
    """A larger workflow: classify with the shunt, forward its progress, then act on the label."""

    def __init__(self, shunt_wf: DataShuntWorkflow, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.shunt_wf = shunt_wf

    @step
    async def triage(self, ctx: Context, ev: StartEvent) -> Routed:
        handler = self.shunt_wf.run(text=ev.ticket)
        async for progress in handler.stream_events():
            if isinstance(progress, ShuntProgressEvent):
                ctx.write_event_to_stream(progress)
        result: ShuntResult = await handler
        return Routed(label=result.label, text=ev.ticket)

    @step
    async def act(self, ev: Routed) -> StopEvent:
        action = "escalate" if ev.label == "negative" else "archive"
        return StopEvent(result=f"{action}: {ev.text}")


async def test_workflow_composes_into_a_larger_one() -> None:
    llm = ScriptedLLM(answer="negative")
    outer = Ticketing(DataShuntWorkflow(_shunt(None), llm, timeout=10), timeout=20)
    handler = outer.run(ticket="the box was awful")
    events = [e async for e in handler.stream_events()]
    assert await handler == "escalate: the box was awful"
    assert _stages(events) == ["classified", "answered_by_gate"] and llm.calls == 0
    assert await outer.run(ticket="it came on Tuesday") == "escalate: it came on Tuesday"
    assert llm.calls == 1


def test_constructor_checks_types() -> None:
    with pytest.raises(TypeError, match="LlamaIndex LLM"):
        DataShuntWorkflow(_shunt(None), llm=None)  # type: ignore[arg-type]
