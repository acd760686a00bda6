"""Every request path runs the engine's one request: each input validated once, decided in one
gate pass, given one receipt; and every path audits the gate's answers at ``audit_rate``.

The paths: the core shunt (sync, async), the LangChain runnable (invoke, batch, abatch, stream,
astream), router and agent middleware, and the LlamaIndex LLM, selector and workflow.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata

import datashunt.engine.conclude as engine_conclude
import datashunt.inputs as inputs
from datashunt import CallStore, Shunt, ShuntPolicy
from datashunt.engine import Watch
from langchain_datashunt import DataShuntMiddleware, DataShuntRouter, DataShuntRunnable
from llamaindex_datashunt import DataShuntLLM, DataShuntSelector, DataShuntWorkflow
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat
from tests.support.llamaindex_fakes import ScriptedLLM, llamaindex_sandbox  # noqa: F401

CONFIDENT, UNSURE = "a great buy", "it came on a tuesday"
LABELS = ("negative", "positive")
_PACKAGES = {"datashunt", "langchain_datashunt", "llamaindex_datashunt"}


@dataclass
class Tally:
    """What the engine did per input text."""

    validated: Counter[str] = field(default_factory=Counter)
    receipts: int = 0


@pytest.fixture
def tally(monkeypatch: pytest.MonkeyPatch) -> Tally:
    seen = Tally()
    real = inputs.validate_text

    def counting(text: object, **kw: Any) -> str:
        out = real(text, **kw)
        seen.validated[out] += 1
        return out

    # every module of the three packages that holds the checker, wherever it is called from
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in _PACKAGES and getattr(module, "validate_text", None) is real:
            monkeypatch.setattr(module, "validate_text", counting)
    real_receipt = engine_conclude.make_receipt

    def receipt(*args: Any, **kw: Any) -> Any:
        seen.receipts += 1
        return real_receipt(*args, **kw)

    monkeypatch.setattr(engine_conclude, "make_receipt", receipt)
    return seen


def _shunt(gate: KeywordGate, **options: Any) -> Shunt:
    if options.pop("shadow", False):  # no gate yet: the labels are all the shunt knows
        return Shunt.shadow(LABELS, **options)
    return Shunt(gate, ShuntPolicy(labels=LABELS, threshold=0.9), **options)


def _chat() -> CountingChat:
    return CountingChat(answer=lambda _prompt: "negative")


def _gate_seen(gate: KeywordGate) -> Counter[str]:
    return Counter(t for batch in gate.seen for t in batch)


def _agent(llm: CountingChat, mw: DataShuntMiddleware) -> Any:
    from langchain.agents import create_agent

    return create_agent(model=llm, tools=[], middleware=[mw])


def _turn(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _workflow_run(wf: DataShuntWorkflow, text: str) -> Any:
    async def go() -> Any:
        return await wf.run(text=text)

    return asyncio.run(go())


_CHOICES = [ToolMetadata(name=lab, description=f"the {lab} one") for lab in LABELS]


def _paths() -> Iterator[tuple[str, Callable[[KeywordGate, Any], list[str]]]]:
    """Each path as (name, run(gate, options) -> the texts it answered)."""
    both = [CONFIDENT, UNSURE]

    def core_sync(gate: KeywordGate, opts: Any) -> list[str]:
        _shunt(gate, llm=lambda r: "negative", **opts).run_batch(both)
        return both

    def core_async(gate: KeywordGate, opts: Any) -> list[str]:
        asyncio.run(_shunt(gate, llm=lambda r: "negative", **opts).arun_batch(both))
        return both

    def runnable(kind: str) -> Callable[[KeywordGate, Any], list[str]]:
        def run(gate: KeywordGate, opts: Any) -> list[str]:
            r = DataShuntRunnable(shunt=_shunt(gate, **opts), llm=_chat())
            if kind == "invoke":
                r.invoke(CONFIDENT)
                r.invoke(UNSURE)
            elif kind == "batch":
                r.batch(both)
            elif kind == "abatch":
                asyncio.run(r.abatch(both))
            elif kind == "stream":
                for text in both:
                    list(r.stream(text))
            else:

                async def go() -> None:
                    for text in both:
                        _ = [c async for c in r.astream(text)]

                asyncio.run(go())
            return both

        return run

    def router(gate: KeywordGate, opts: Any) -> list[str]:
        dests = {lab: RunnableLambda(lambda x, lab=lab: lab) for lab in LABELS}
        r = DataShuntRouter(shunt=_shunt(gate, **opts), destinations=dests, llm=_chat())
        r.batch(both)
        return both

    def middleware(gate: KeywordGate, opts: Any) -> list[str]:
        agent = _agent(
            CountingChat(answer=lambda p: "negative"), DataShuntMiddleware(_shunt(gate, **opts))
        )
        for text in both:
            agent.invoke(_turn(text))
        return both

    def li_llm(gate: KeywordGate, opts: Any) -> list[str]:
        llm = DataShuntLLM(ScriptedLLM(answer="negative"), _shunt(gate, **opts))
        llm.chat([ChatMessage(role=MessageRole.USER, content=CONFIDENT)])
        llm.complete(UNSURE)
        return both

    def selector(gate: KeywordGate, opts: Any) -> list[str]:
        sel = DataShuntSelector(_shunt(gate, **opts), ScriptedLLM(answer="negative"))
        for text in both:
            sel.select(_CHOICES, QueryBundle(text))
        return both

    def workflow(gate: KeywordGate, opts: Any) -> list[str]:
        wf = DataShuntWorkflow(_shunt(gate, **opts), ScriptedLLM(answer="negative"), timeout=30)
        for text in both:
            _workflow_run(wf, text)
        return both

    yield "core", core_sync
    yield "core-async", core_async
    for kind in ("invoke", "batch", "abatch", "stream", "astream"):
        yield f"runnable-{kind}", runnable(kind)
    yield "router", router
    yield "middleware", middleware
    yield "llamaindex-llm", li_llm
    yield "selector", selector
    yield "workflow", workflow


PATHS = dict(_paths())


@pytest.mark.parametrize("path", sorted(PATHS))
def test_each_input_is_validated_decided_and_receipted_once(path: str, tally: Tally) -> None:
    gate = KeywordGate()
    texts = PATHS[path](gate, {})
    assert tally.validated == Counter(texts), "validations per input"
    assert _gate_seen(gate) == Counter(texts), "gate passes per input"
    assert tally.receipts == len(texts), "receipts"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_audits_every_gate_answer_at_rate_one(path: str) -> None:
    audited: list[Any] = []
    real = Watch.observe_audits

    def keep(self: Watch, results: Any) -> Any:
        audited.extend(results)
        return real(self, results)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Watch, "observe_audits", keep)
        PATHS[path](KeywordGate(), {"audit_rate": 1.0})
    # the confident input was answered by the gate and put to the LLM; the unsure one was not
    (result,) = audited
    assert result.source == "small" and result.extra["audit"]["source"] == "llm"
    assert result.extra["audit"]["label"] == "negative"  # what every fake LLM answers
    assert result.receipt.audited


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_can_shadow(path: str, tmp_path: Path) -> None:
    store = tmp_path / "calls.sqlite"
    texts = PATHS[path](KeywordGate(), {"shadow": True, "store": store})
    recs = list(CallStore(store).iter())
    # every input went to the LLM (no gate yet), recorded with the label it answered
    assert sorted(r.input_text for r in recs) == sorted(texts)
    assert {r.route for r in recs} == {"llm"} and {r.parsed_label for r in recs} == {"negative"}
    assert all(r.candidates == list(LABELS) for r in recs)
