"""DataShuntSelector: gate routes when sure, the LLM picks among pruned choices otherwise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import Document, SummaryIndex
from llama_index.core.base.base_selector import SelectorResult
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import MockLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.query_engine import CustomQueryEngine, RouterQueryEngine
from llama_index.core.retrievers import RouterRetriever
from llama_index.core.tools import QueryEngineTool, RetrieverTool
from llama_index.core.tools.types import ToolMetadata

from datashunt import CallStore, ConfigError
from llamaindex_datashunt import DataShuntSelection, DataShuntSelector
from tests.support.llamaindex_fakes import (  # noqa: F401 - fixtures
    BiasedTopicGate,
    ScriptedLLM,
    llamaindex_sandbox,
    openai_logprobs,
    temp_store,
    topic_shunt,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    yield from temp_store(tmp_path)


CHOICES = [
    ToolMetadata(name="sports", description="Scores, matches and players."),
    ToolMetadata(name="weather", description="Forecasts and\nclimate."),
    ToolMetadata(name="finance", description="Markets and banks."),
]


def _selector(store: CallStore | None, llm: ScriptedLLM, **kw: object) -> DataShuntSelector:
    return DataShuntSelector(topic_shunt(store), llm, **kw)  # type: ignore[arg-type]


def test_confident_query_is_routed_by_the_gate_alone(store: CallStore) -> None:
    llm = ScriptedLLM()
    res = _selector(store, llm).select(CHOICES, "who scored the goal?")
    assert isinstance(res, SelectorResult) and isinstance(res, DataShuntSelection)
    assert res.ind == 0 and res.label == "sports" and res.result.source == "small"
    assert "gate chose 'sports'" in res.reason
    assert llm.calls == 0
    assert [r.route for r in store.iter()] == ["small"]


def test_uncertain_query_asks_llm_with_pruned_options_and_hint(store: CallStore) -> None:
    llm = ScriptedLLM(answer="weather")
    res = _selector(store, llm).select(CHOICES, "what about tomorrow?")
    assert res.ind == 1 and res.result.source == "llm"
    assert llm.calls == 1
    prompt = llm.prompts[0]
    assert "(1) sports: Scores, matches and players." in prompt
    assert "(2) weather: Forecasts and climate." in prompt  # descriptions on one line
    assert "(3)" not in prompt and "finance:" not in prompt  # pruned: p = 0.10 < ε = 0.4
    assert "probability 0.45" in prompt  # the soft hint
    assert "what about tomorrow?" in prompt
    assert "LLM chose 'weather'" in res.reason
    (rec,) = list(store.iter())
    assert rec.route == "llm" and rec.source == "llm" and rec.response == "weather"
    assert rec.prompt is not None and "(2) weather" in rec.prompt
    assert rec.candidates == ["sports", "weather"]


@pytest.mark.parametrize("answer", ["2", "(2)", "Option 2.", "weather", "The answer is: weather"])
def test_llm_may_answer_with_the_option_number_or_name(answer: str) -> None:
    res = _selector(None, ScriptedLLM(answer=answer)).select(CHOICES, "tomorrow?")
    assert res.ind == 1 and res.result.source == "llm", res.reason


def test_answer_outside_the_pruned_candidates_falls_back(store: CallStore) -> None:
    res = _selector(store, ScriptedLLM(answer="finance")).select(CHOICES, "tomorrow?")
    assert res.result.source == "fallback" and res.ind == 0
    assert "not among the candidates" in res.reason


def test_garbage_answer_falls_back_to_gate_top_choice(store: CallStore) -> None:
    res = _selector(store, ScriptedLLM(answer="I like turtles")).select(CHOICES, "tomorrow?")
    assert res.ind == 0 and res.label == "sports" and res.result.source == "fallback"
    assert "LLM answer unusable (no label mentioned)" in res.reason
    assert "fell back to the gate's top choice 'sports'" in res.reason
    (rec,) = list(store.iter())
    assert rec.parse_ok is False and rec.response == "I like turtles"


def test_llm_exception_falls_back_and_is_recorded(store: CallStore) -> None:
    llm = ScriptedLLM(answer=TimeoutError("provider timed out"))
    res = _selector(store, llm).select(CHOICES, "tomorrow?")
    assert res.result.source == "fallback" and res.ind == 0
    assert "TimeoutError: provider timed out" in res.reason
    (rec,) = list(store.iter())
    assert rec.error == "TimeoutError: provider timed out" and rec.response is None


def test_logprobs_give_llm_confidence(store: CallStore) -> None:
    lp = openai_logprobs([("weather", -0.105), ("sports", -2.3)])
    res = _selector(store, ScriptedLLM(answer="weather", logprobs=lp)).select(CHOICES, "hm?")
    assert res.result.llm_confidence == pytest.approx(0.9, abs=0.01)
    (rec,) = list(store.iter())
    assert rec.llm_confidence == pytest.approx(0.9, abs=0.01)


def test_non_chat_llm_gets_a_completion_prompt() -> None:
    llm = ScriptedLLM(answer="sports", chat_model=False)
    res = _selector(None, llm).select(CHOICES, "tomorrow?")
    assert res.ind == 0 and res.result.source == "llm"
    assert llm.prompts[0].startswith("Choose the option")  # no "user:" chat rendering


async def test_aselect_confident_runs_the_gate_in_a_thread(store: CallStore) -> None:
    gate = BiasedTopicGate()
    llm = ScriptedLLM()
    sel = DataShuntSelector(topic_shunt(store, gate=gate), llm)
    res = await sel.aselect(CHOICES, "sunny all week")
    assert res.ind == 1 and llm.calls == 0
    assert gate.threads and gate.threads[0] is not threading.current_thread()


async def test_aselect_uncertain_uses_the_llm(store: CallStore) -> None:
    llm = ScriptedLLM(answer="2")
    res = await _selector(store, llm).aselect(CHOICES, "tomorrow?")
    assert res.ind == 1 and llm.calls == 1
    assert store.count() == 1


async def test_aselect_exception_falls_back() -> None:
    res = await _selector(None, ScriptedLLM(answer=RuntimeError("down"))).aselect(CHOICES, "x?")
    assert res.result.source == "fallback" and "RuntimeError: down" in res.reason


# ---- mapping labels to choices -----------------------------------------------------------------


def test_label_to_choice_maps_labels_to_other_names_and_indices() -> None:
    choices = [
        ToolMetadata(name="sports_engine", description="sport"),
        ToolMetadata(name="meteo", description="weather"),
        ToolMetadata(name="money", description="finance"),
    ]
    mapping = {"sports": "sports_engine", "weather": 1, "finance": "money"}
    sel = _selector(None, ScriptedLLM(answer="meteo"), label_to_choice=mapping)
    assert sel.choice_index(choices) == {"sports": 0, "weather": 1, "finance": 2}
    res = sel.select(choices, "tomorrow?")  # the LLM answers with the tool name
    assert res.ind == 1 and res.label == "weather" and res.result.source == "llm"


def test_plain_string_choices_need_index_mapping() -> None:
    sel = _selector(None, ScriptedLLM(), label_to_choice={"sports": 0, "weather": 1, "finance": 2})
    res = sel.select(["sport things", "weather things", "money"], "a great match")
    assert res.ind == 0


def test_names_match_case_insensitively() -> None:
    choices = [
        ToolMetadata(name=n.upper(), description=n) for n in ("sports", "weather", "finance")
    ]
    assert _selector(None, ScriptedLLM()).choice_index(choices)["finance"] == 2


def test_unmatched_label_is_a_clear_error() -> None:
    sel = _selector(None, ScriptedLLM())
    with pytest.raises(
        ConfigError, match=r"gate label 'finance' matches no choice.*label_to_choice"
    ):
        sel.select(CHOICES[:2], "a great match")


def test_unknown_label_in_mapping_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"labels \['politics'\].*its labels are"):
        _selector(None, ScriptedLLM(), label_to_choice={"politics": "news"})


def test_out_of_range_index_and_duplicate_names_are_errors() -> None:
    sel = _selector(None, ScriptedLLM(), label_to_choice={"finance": 7})
    with pytest.raises(ConfigError, match="out of range"):
        sel.select(CHOICES, "x")
    dup = [*CHOICES, ToolMetadata(name="Sports", description="again")]
    with pytest.raises(ConfigError, match="several choices"):
        _selector(None, ScriptedLLM()).select(dup, "x")


def test_constructor_checks_types() -> None:
    with pytest.raises(TypeError, match="LlamaIndex LLM"):
        DataShuntSelector(topic_shunt(None), llm="gpt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="datashunt.Shunt"):
        DataShuntSelector(object(), ScriptedLLM())  # type: ignore[arg-type]


def test_prompt_is_visible_and_updatable() -> None:
    llm = ScriptedLLM(answer="weather")
    sel = _selector(None, llm)
    assert "Choose the option" in sel.get_prompts()["prompt"].get_template()
    sel.update_prompts({"prompt": PromptTemplate("Pick one of:\n{options}\nQ: {text}")})
    sel.select(CHOICES, "tomorrow?")
    assert llm.prompts[0] == "user: Pick one of:\n(1) sports: Scores, matches and players.\n" + (
        "(2) weather: Forecasts and climate.\nQ: tomorrow?"
    )


# ---- inside RouterQueryEngine and RouterRetriever -----------------------------------------------


class EchoEngine(CustomQueryEngine):
    """A query engine that answers with its own name, counting queries."""

    name: str
    queries: list[str] = []

    def custom_query(self, query_str: str) -> str:
        self.queries.append(query_str)
        return f"{self.name}: {query_str}"


def _engine_tools() -> tuple[list[QueryEngineTool], list[EchoEngine]]:
    engines = [EchoEngine(name=c.name or "", queries=[]) for c in CHOICES]
    tools = [
        QueryEngineTool.from_defaults(e, name=c.name, description=c.description)
        for e, c in zip(engines, CHOICES, strict=True)
    ]
    return tools, engines


def test_router_query_engine_routes_confident_queries_without_the_llm(store: CallStore) -> None:
    tools, engines = _engine_tools()
    llm = ScriptedLLM()
    router = RouterQueryEngine(_selector(store, llm), tools, llm=MockLLM())
    resp = router.query("will it rain today?")
    assert str(resp) == "weather: will it rain today?"
    assert engines[1].queries == ["will it rain today?"] and llm.calls == 0
    assert isinstance(resp, Response) and resp.metadata is not None
    assert resp.metadata["selector_result"].result.source == "small"


def test_router_query_engine_asks_the_llm_when_unsure(store: CallStore) -> None:
    tools, engines = _engine_tools()
    llm = ScriptedLLM(answer="weather")
    router = RouterQueryEngine(_selector(store, llm), tools, llm=MockLLM())
    assert str(router.query("anything for tomorrow?")) == "weather: anything for tomorrow?"
    assert llm.calls == 1 and store.count(route="llm") == 1


async def test_router_query_engine_async() -> None:
    tools, engines = _engine_tools()
    llm = ScriptedLLM(answer="1")
    router = RouterQueryEngine(_selector(None, llm), tools, llm=MockLLM())
    assert str(await router.aquery("hmm?")) == "sports: hmm?"
    assert str(await router.aquery("stock prices")) == "finance: stock prices"
    assert llm.calls == 1


def _indexes() -> list[SummaryIndex]:
    texts = [
        "The final match ended two goals to one.",
        "Heavy rain is expected on Sunday.",
        "The stock index rose three percent.",
    ]
    return [SummaryIndex.from_documents([Document(text=t)]) for t in texts]


def test_router_query_engine_over_summary_indexes() -> None:
    indexes = _indexes()
    tools = [
        QueryEngineTool.from_defaults(
            ix.as_query_engine(llm=MockLLM()), name=c.name, description=c.description
        )
        for ix, c in zip(indexes, CHOICES, strict=True)
    ]
    router = RouterQueryEngine(_selector(None, ScriptedLLM()), tools, llm=MockLLM())
    resp = router.query("any rain at the weekend?")
    # MockLLM echoes its prompt, which holds the retrieved context of the chosen index.
    assert "Heavy rain is expected on Sunday." in str(resp)
    assert "goals" not in str(resp)


def test_router_retriever_selects_the_retriever() -> None:
    tools = [
        RetrieverTool.from_defaults(ix.as_retriever(), name=c.name, description=c.description)
        for ix, c in zip(_indexes(), CHOICES, strict=True)
    ]
    llm = ScriptedLLM(answer="sports")
    retriever = RouterRetriever(_selector(None, llm), tools, llm=MockLLM())
    nodes = retriever.retrieve("stock market news")
    assert [n.node.get_content() for n in nodes] == ["The stock index rose three percent."]
    nodes = retriever.retrieve("who won?")
    assert [n.node.get_content() for n in nodes] == ["The final match ended two goals to one."]
    assert llm.calls == 1


async def test_router_retriever_async() -> None:
    tools = [
        RetrieverTool.from_defaults(ix.as_retriever(), name=c.name, description=c.description)
        for ix, c in zip(_indexes(), CHOICES, strict=True)
    ]
    retriever = RouterRetriever(_selector(None, ScriptedLLM()), tools, llm=MockLLM())
    nodes = await retriever.aretrieve("sunny or rain?")
    assert [n.node.get_content() for n in nodes] == ["Heavy rain is expected on Sunday."]
