"""DataShuntGenerativeLLM: the small LLM's confident answers stand, the rest go to the large one
(chat, complete, async, streaming), and each escalation is recorded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from datashunt import CallStore, ConfigError
from datashunt.generative import GenerativePolicy, GenerativeShunt
from llamaindex_datashunt import DataShuntEventHandler, DataShuntGenerativeLLM
from tests.support.llamaindex_fakes import ScriptedLLM, llamaindex_sandbox

__all__ = ["llamaindex_sandbox"]  # the autouse fixture: mock Settings, no handler left behind


class ScoredLLM(ScriptedLLM):
    """Token logprobs -0.01 for answers starting "sure", -2 otherwise (in the raw payload)."""

    def _raw(self, text: str) -> dict[str, Any]:
        lp = -0.01 if text.startswith("sure") else -2.0
        content = [{"token": w, "logprob": lp, "top_logprobs": []} for w in text.split()]
        choice = {
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": content},
        }
        return {"model": "small-1", "choices": [choice]}


def _small() -> ScoredLLM:
    return ScoredLLM(answer=lambda p: "sure thing" if "easy" in p else "maybe this")


def test_chat_and_complete_keep_or_escalate(tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    large = ScriptedLLM(answer="the large answer")
    policy = GenerativePolicy("mean", 0.5)
    llm = DataShuntGenerativeLLM.from_policy(policy, small=_small(), large=large, store=store)
    assert llm.complete("an easy question").text == "sure thing"
    hard = llm.chat([ChatMessage(role=MessageRole.USER, content="a hard question")])
    assert hard.message.content == "the large answer"
    summary = hard.additional_kwargs["datashunt"]
    assert summary["route"] == "llm" and summary["small_answer"] == "maybe this"
    assert large.calls == 1
    (rec,) = list(CallStore(store).iter())
    assert rec.id == summary["record_id"] and rec.response == "the large answer"
    assert rec.messages == [{"role": "user", "content": "a hard question"}]
    streamed = list(llm.stream_complete("hard again"))
    assert "".join(r.delta or "" for r in streamed) == "the large answer"
    assert streamed[-1].text == "the large answer"  # the last response: whole, with the route
    assert streamed[-1].additional_kwargs["datashunt"]["route"] == "llm"
    kept = list(llm.stream_complete("easy again"))
    assert [r.delta for r in kept] == ["sure thing"]  # judged whole, sent as one response


async def test_async_forms_and_the_handler_records_once(tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    handler = DataShuntEventHandler(store=CallStore(store))
    from llama_index.core.instrumentation import get_dispatcher

    get_dispatcher().add_event_handler(handler)
    large = ScriptedLLM(answer="the large answer")
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5), store=CallStore(store))
    llm = DataShuntGenerativeLLM(_small(), large, shunt)
    assert llm.shunt is shunt
    assert (await llm.acomplete("easy")).text == "sure thing"
    assert (await llm.acomplete("hard")).text == "the large answer"
    chunks = [c async for c in await llm.astream_chat([ChatMessage(role="user", content="hard")])]
    assert "".join(c.delta or "" for c in chunks) == "the large answer"
    assert chunks[-1].message.content == "the large answer"
    escalations = [r for r in CallStore(store).iter() if r.response == "the large answer"]
    assert len(escalations) == 2  # recorded by the shunt, not a second time by the handler


def test_loose_options_are_refused_with_how_to_pass_them() -> None:
    with pytest.raises(ConfigError, match=r"shunt=GenerativeShunt.*from_policy.*'policy', 'store'"):
        DataShuntGenerativeLLM(_small(), ScriptedLLM(), policy=GenerativePolicy(), store="x.db")
