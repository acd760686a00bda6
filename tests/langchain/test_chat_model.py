"""DataShuntChatModel: the small model's confident answers stand, the rest go to the large one
(invoke, stream, batch, async, callbacks); tools and structured output go to the large one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from datashunt import CallStore, LLMError
from datashunt.generative import GenerativePolicy
from langchain_datashunt import DataShuntChatModel
from tests.support.lc_fakes import CountingChat


class ScoredSmall(CountingChat):
    """Answers with token logprobs: -0.01 per token for prompts saying "easy", -2 otherwise."""

    model_name: str = "small-fake"

    def _message(self, text: str) -> AIMessage:
        prompt = self._prompts[-1]
        lp = -0.01 if "easy" in prompt else -2.0
        logprobs = [{"token": w, "logprob": lp, "top_logprobs": []} for w in text.split()]
        meta = {"model_name": "small-fake", "logprobs": {"content": logprobs}}
        return AIMessage(content=text, response_metadata=meta)


class ToolLarge(CountingChat):
    model_name: str = "large-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Runnable[Any, BaseMessage]:
        return self.bind(tools=[getattr(t, "__name__", str(t)) for t in tools])


def _model(tmp_path: Path | None = None, **kw: Any) -> DataShuntChatModel:
    return DataShuntChatModel(
        small=ScoredSmall(answer=lambda p: "small answer"),
        large=ToolLarge(answer=lambda p: "large answer here"),
        policy=GenerativePolicy("mean", 0.5),
        store=tmp_path / "calls.db" if tmp_path else None,
        **kw,
    )


def test_invoke_keeps_or_escalates_and_records(tmp_path: Path) -> None:
    chat = _model(tmp_path)
    easy = chat.invoke("an easy one")
    assert easy.content == "small answer"
    assert easy.response_metadata["datashunt"]["route"] == "small"
    hard = chat.invoke("a hard one")
    assert hard.content == "large answer here"
    meta = hard.response_metadata["datashunt"]
    assert meta["route"] == "llm" and meta["small_answer"] == "small answer"
    (rec,) = list(CallStore(tmp_path / "calls.db").iter())
    assert rec.id == meta["record_id"] and rec.model == "counting-fake"  # as the reply says
    assert rec.messages == [{"role": "user", "content": "a hard one"}]
    assert chat.large.calls == 1 and chat.small.calls == 2  # type: ignore[attr-defined]


def test_batch_stream_and_callbacks() -> None:
    chat = _model()
    outs = chat.batch(["easy a", "hard b", "easy c"])
    assert [o.content for o in outs] == ["small answer", "large answer here", "small answer"]
    chunks = list(chat.stream("hard d"))
    assert "".join(str(c.content) for c in chunks) == "large answer here"
    assert len([c for c in chunks if c.content]) == 3  # streamed as the large model sent it
    kept = [c.content for c in chat.stream("easy e") if c.content]
    assert kept == ["small answer"]  # judged whole, sent as one chunk

    class Seen(BaseCallbackHandler):
        def __init__(self) -> None:
            self.starts: list[str] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.starts.append(kw.get("metadata", {}).get("ls_model_type", "chat"))

    seen = Seen()
    chat.invoke("hard f", config={"callbacks": [seen]})
    assert len(seen.starts) == 3  # the shunt model, then small and large as child runs


async def test_async_forms() -> None:
    chat = _model()
    assert (await chat.ainvoke("easy")).content == "small answer"
    assert (await chat.ainvoke("hard")).content == "large answer here"
    chunks = [c async for c in chat.astream("hard")]
    assert "".join(str(c.content) for c in chunks) == "large answer here"
    outs = await chat.abatch(["easy", "hard"])
    assert [o.content for o in outs] == ["small answer", "large answer here"]


def test_a_failing_large_model_falls_back_or_raises(tmp_path: Path) -> None:
    from datashunt import RetryPolicy

    broken = ToolLarge(answer=lambda p: RuntimeError("boom"))
    chat = DataShuntChatModel(
        small=ScoredSmall(answer=lambda p: "small answer"),
        large=broken,
        policy=GenerativePolicy("mean", 0.5),
        retry=RetryPolicy(attempts=1),
        store=tmp_path / "c.db",
    )
    out = chat.invoke("hard")
    assert out.content == "small answer"
    assert out.response_metadata["datashunt"]["source"] == "fallback"
    (rec,) = list(CallStore(tmp_path / "c.db").iter())
    assert rec.error and "boom" in rec.error
    assert [c.content for c in chat.stream("hard") if c.content] == ["small answer"]
    strict = DataShuntChatModel(
        small=ScoredSmall(answer=lambda p: "small answer"),
        large=broken,
        policy=GenerativePolicy("mean", 0.5),
        retry=RetryPolicy(attempts=1),
        on_llm_error="raise",
    )
    with pytest.raises(LLMError, match="boom"):
        strict.invoke("hard")


def test_tools_and_structured_output_go_to_the_large_model() -> None:
    chat = _model()

    def lookup(city: str) -> str:
        """Weather in a city."""
        return city

    bound = chat.bind_tools([lookup])
    assert bound.bound is chat.large  # type: ignore[attr-defined]
    assert bound.kwargs == {"tools": ["lookup"]}  # type: ignore[attr-defined]
    structured = chat.with_structured_output({"title": "x", "type": "object", "properties": {}})
    assert structured.first.bound is chat.large  # type: ignore[attr-defined]
