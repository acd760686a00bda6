"""DataShuntRunnable with fake chat models: routing, prompts, LCEL, batch, async, streaming."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import ParrotFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel

from datashunt import CallStore, InputError, LLMError, ShuntPolicy
from langchain_datashunt import DECISION_EVENT, DataShuntRunnable, ShuntOutput
from tests.conftest import ArrayGate, KeywordGate
from tests.support.lc_fakes import CountingChat

LABELS = ("negative", "positive")
POLICY = ShuntPolicy(labels=LABELS, threshold=0.9)


def _shunt(llm: Any, gate: Any = None, **kw: Any) -> DataShuntRunnable:
    return DataShuntRunnable.from_gate(gate=gate or KeywordGate(), policy=POLICY, llm=llm, **kw)


def test_confident_input_never_calls_the_model() -> None:
    llm = CountingChat()
    out = _shunt(llm).invoke("good good product")
    assert out.route == "small" and out.label == "positive" and out.message is None
    assert llm.calls == 0


def test_soft_prompt_injected_and_label_parsed() -> None:
    out = _shunt(ParrotFakeChatModel(), noun="review").invoke("arrived on a tuesday")
    assert out.route == "llm" and out.message is not None
    sent = str(out.message.text)
    assert "A smaller model labelled this review" in sent and "arrived on a tuesday" in sent
    # the parrot echoes a prompt naming both labels: unparseable, so the gate's label is used
    assert out.source == "fallback" and out.label in LABELS


def test_hard_prompt_removes_ruled_out_labels() -> None:
    labels = ("World", "Sports", "Business", "Sci/Tech")
    gate = ArrayGate(labels, [[0.01, 0.01, 0.6, 0.38]])
    policy = ShuntPolicy(labels=labels, threshold=0.9, class_recall=dict.fromkeys(labels, 0.95))
    llm = CountingChat(answer=lambda p: "Sci/Tech")
    out = DataShuntRunnable.from_gate(gate=gate, policy=policy, llm=llm, prompt_mode="hard").invoke(
        "chips"
    )
    assert "one of: Business, Sci/Tech." in llm.prompts[0] and "smaller model" not in llm.prompts[0]
    assert (
        out.label == "Sci/Tech"
        and out.source == "llm"
        and out.candidates == ["Business", "Sci/Tech"]
    )


def test_dict_input_custom_template_and_lcel_composition() -> None:
    llm = CountingChat(answer=lambda p: "The answer is negative.")
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You grade {kind}."), ("human", "{hint}Options: {candidates}\n{text}")]
    )
    shunt = _shunt(llm, prompt=prompt, input_key="review")
    chain = shunt | RunnableLambda(lambda o: o.label)
    assert chain.invoke({"review": "meh", "kind": "reviews"}) == "negative"
    assert llm.prompts[0].startswith("You grade reviews.")
    # a prompt upstream: the last human message is what the gate classifies
    upstream = ChatPromptTemplate.from_messages([("human", "{q}")])
    assert (upstream | shunt).invoke({"q": "great"}).route == "small"
    both = RunnableParallel(a=shunt, b=RunnableLambda(len)).invoke("good")
    assert isinstance(both["a"], ShuntOutput) and both["b"] == 4


def test_bad_inputs_are_clear_errors() -> None:
    shunt = _shunt(CountingChat())
    with pytest.raises(InputError, match="no 'text' key"):
        shunt.invoke({"body": "x"})
    with pytest.raises(InputError, match="empty"):
        shunt.invoke("   ")
    with pytest.raises(InputError, match="is an int, which cannot be classified"):
        shunt.invoke(42)


def test_batch_one_gate_pass_and_only_uncertain_to_model() -> None:
    gate, llm = KeywordGate(), CountingChat(answer=lambda p: "negative", delay=0.05)
    outs = _shunt(llm, gate).batch(
        ["good", "x1", "bad", "x2", "x3", "x4", "great"], config={"max_concurrency": 2}
    )
    assert gate.calls == 1 and llm.calls == 4 and llm.peak <= 2
    assert [o.route for o in outs] == ["small", "llm", "small", "llm", "llm", "llm", "small"]
    assert [o.label for o in outs] == ["positive"] + ["negative"] * 5 + ["positive"]


def test_batch_errors_with_and_without_return_exceptions() -> None:
    llm = CountingChat(answer=lambda p: TimeoutError("slow") if "late" in p else "positive")
    strict = _shunt(llm, on_llm_error="raise")
    outs = strict.batch(["late reply", "", "fine", "good"], return_exceptions=True)
    assert isinstance(outs[0], LLMError) and isinstance(outs[1], InputError)
    assert outs[2].label == "positive" and outs[3].route == "small"  # type: ignore[union-attr]
    with pytest.raises(LLMError, match="slow"):
        strict.batch(["late reply", "fine"])
    lenient = _shunt(llm).invoke("late reply")
    assert lenient.source == "fallback" and lenient.error == "TimeoutError: slow"


async def test_async_paths() -> None:
    gate, llm = KeywordGate(), CountingChat(answer=lambda p: "positive", delay=0.05)
    shunt = _shunt(llm, gate)
    outs = await shunt.abatch([f"q{i}" for i in range(8)] + ["bad"], config={"max_concurrency": 3})
    assert gate.calls == 1 and llm.calls == 8 and 1 < llm.peak <= 3
    assert outs[-1].route == "small" and outs[0].label == "positive"
    assert (await shunt.ainvoke("awful")).label == "negative"
    failing = _shunt(
        CountingChat(answer=lambda p: ConnectionError("refused")), on_llm_error="raise"
    )
    res = await failing.abatch(["q", "good"], return_exceptions=True)
    assert isinstance(res[0], LLMError) and res[1].route == "small"  # type: ignore[union-attr]


def test_stream_tokens_flow_and_add_up_to_invoke() -> None:
    llm = CountingChat(answer=lambda p: "it is negative")
    shunt = _shunt(llm)
    chunks = list(shunt.stream("so so"))
    # first the decision, then the model's tokens, last the parsed label
    assert chunks[0].route == "llm" and chunks[0].label is None
    tokens = [str(c.message.text) for c in chunks if c.message is not None and c.message.text]
    assert tokens == ["it", " is", " negative"]
    assert chunks[-1].label == "negative" and chunks[-1].message is None
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    ref = shunt.invoke("so so")
    assert total.label == ref.label == "negative" and total.route == "llm"
    assert str(total.message.text) == str(ref.message.text) == "it is negative"  # type: ignore[union-attr]
    small = list(shunt.stream("good"))
    assert len(small) == 1 and small[0].route == "small" and llm.calls == 2


async def test_astream_and_events_show_decision_and_child_run() -> None:
    shunt = _shunt(CountingChat(answer=lambda p: "positive"))
    chunks = [c async for c in shunt.astream("plain")]
    assert chunks[-1].label == "positive"
    events = [e async for e in shunt.astream_events("plain", version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom and custom[0]["name"] == DECISION_EVENT and custom[0]["data"]["route"] == "llm"
    model_start = next(e for e in events if e["event"] == "on_chat_model_start")
    assert model_start["metadata"]["datashunt_route"] == "llm"
    assert model_start["metadata"]["datashunt_confidence"] == pytest.approx(0.5)
    assert any(e["event"] == "on_chat_model_stream" for e in events)


class _Collect(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        self.events.append((name, data))

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self.events.append(("chat_model_start", kw.get("metadata")))


def test_callbacks_see_decision_event_and_model_child_run() -> None:
    handler = _Collect()
    _shunt(CountingChat()).batch(["good", "plain"], config={"callbacks": [handler]})
    names = [n for n, _ in handler.events]
    assert names.count(DECISION_EVENT) == 2 and names.count("chat_model_start") == 1


def test_store_records_with_logprob_confidence(tmp_path: Path) -> None:
    lp = [
        {
            "token": "positive",
            "logprob": math.log(0.9),
            "top_logprobs": [
                {"token": "positive", "logprob": math.log(0.9)},
                {"token": "negative", "logprob": math.log(0.1)},
            ],
        }
    ]
    store = CallStore(tmp_path / "c.sqlite")
    shunt = _shunt(CountingChat(answer=lambda p: "positive", logprobs=lp), store=store)
    out = shunt.invoke("plain words")
    shunt.invoke("good")
    assert out.llm_confidence == pytest.approx(0.9)
    rec = next(store.iter(route="llm"))
    assert rec.id == out.record_id and rec.model == "counting-fake" and rec.prompt_tokens == 20
    assert rec.run_id is not None and store.count(route="small") == 1


def test_from_dir(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "g"
    shutil.copytree(tiny_bert, d)
    ShuntPolicy(labels=LABELS, threshold=0.0).save(d)
    out = DataShuntRunnable.from_dir(d, llm=CountingChat()).invoke("good")
    assert out.route == "small" and out.label in LABELS


def test_output_type_is_shunt_output() -> None:
    # the schema LangChain shows for the runnable (LangServe, graph drawing) names its output
    shunt = _shunt(CountingChat())
    assert shunt.OutputType is ShuntOutput
    assert shunt.output_schema.model_json_schema()["title"] == "ShuntOutput"
