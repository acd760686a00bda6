"""DataShuntChatModel: the small model's confident answers stand, the rest go to the large one
(invoke, stream, batch, async, callbacks); tools and structured output go to the large one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from datashunt import CallStore, LLMError
from datashunt.generative import GenerativePolicy, GenerativeShunt
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
    return DataShuntChatModel.from_policy(
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
    chat = DataShuntChatModel.from_policy(
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
    strict = DataShuntChatModel.from_policy(
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


# ---- streams keep what invoke keeps (issue 28 item 3) -----------------------------------------


SEEN: list[dict[str, Any]] = []  # the options each probe call received, in call order


class ProbeChat(BaseChatModel):
    """A provider-like fake: its answer carries an id, usage, a finish reason, its model name,
    logprobs and (``tools``) a tool call; streamed, they arrive as a provider sends them (text
    in pieces, the tool call's arguments split, usage and finish reason on the last chunk)."""

    name_: str = "probe"
    lp: float = -2.0
    tools: bool = False
    stall: float = 0.0  # seconds before the first streamed chunk

    @property
    def _llm_type(self) -> str:
        return "probe"

    @property
    def model_name(self) -> str:
        return self.name_

    def _meta(self) -> dict[str, Any]:
        logprobs = [{"token": w, "logprob": self.lp, "top_logprobs": []} for w in ("a", "b")]
        return {
            "model_name": self.name_,
            "finish_reason": "stop",
            "logprobs": {"content": logprobs},
        }

    def _usage(self) -> dict[str, int]:
        return {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        from langchain_core.outputs import ChatGeneration, ChatResult

        SEEN.append({"stop": stop, **kw, "how": "invoke"})
        calls = [{"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1"}] if self.tools else []
        message = AIMessage(
            content=f"{self.name_} says hi",
            id=f"msg-{self.name_}",
            usage_metadata=self._usage(),  # type: ignore[arg-type]
            response_metadata=self._meta(),
            tool_calls=calls,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.messages.tool import tool_call_chunk
        from langchain_core.outputs import ChatGenerationChunk

        SEEN.append({"stop": stop, **kw, "how": "stream"})
        if self.stall:
            import time

            time.sleep(self.stall)
        pid = f"msg-{self.name_}"
        for piece in (f"{self.name_} ", "says ", "hi"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=pid))
        if self.tools:
            for part, name in (('{"a": 1, ', "add"), ('"b": 2}', None)):
                tc = tool_call_chunk(name=name, args=part, id="call-1" if name else None, index=0)
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", id=pid, tool_call_chunks=[tc])
                )
        last = AIMessageChunk(
            content="",
            id=pid,
            usage_metadata=self._usage(),
            response_metadata=self._meta(),  # type: ignore[arg-type]
        )
        yield ChatGenerationChunk(message=last)


def _pair(kept: bool, tools: bool = False, **kw: Any) -> DataShuntChatModel:
    SEEN.clear()
    return DataShuntChatModel.from_policy(
        small=ProbeChat(name_="small-probe", lp=-0.01 if kept else -2.0),
        large=ProbeChat(name_="large-probe", tools=tools),
        policy=GenerativePolicy("mean", 0.5),
        **kw,
    )


def _facts(message: BaseMessage) -> dict[str, Any]:
    meta = message.response_metadata
    route = {k: meta["datashunt"][k] for k in ("route", "source", "small_answer", "reason")}
    return {
        "content": message.content,
        "id": message.id,
        "usage": getattr(message, "usage_metadata", None),
        "finish_reason": meta.get("finish_reason"),
        "model_name": meta.get("model_name"),
        "tool_calls": getattr(message, "tool_calls", None),
        "route": route,
    }


def _joined(chunks: list[Any]) -> BaseMessage:
    out = chunks[0]
    for c in chunks[1:]:
        out = out + c
    return out


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "escalated"])
def test_stream_keeps_what_invoke_keeps(kept: bool) -> None:
    chat = _pair(kept, tools=not kept)
    invoked = chat.invoke("q")
    streamed = _joined(list(chat.stream("q")))
    assert _facts(streamed) == _facts(invoked)
    want = "small-probe" if kept else "large-probe"
    assert _facts(invoked)["model_name"] == want and invoked.id == f"msg-{want}"
    assert invoked.usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert _facts(invoked)["route"]["route"] == ("small" if kept else "llm")
    if not kept:
        assert streamed.tool_calls == [  # type: ignore[attr-defined]
            {"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1", "type": "tool_call"}
        ]
        assert [s["how"] for s in SEEN] == ["invoke", "invoke", "invoke", "stream"]


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "escalated"])
async def test_astream_keeps_what_ainvoke_keeps(kept: bool) -> None:
    chat = _pair(kept, tools=not kept)
    invoked = await chat.ainvoke("q")
    streamed = _joined([c async for c in chat.astream("q")])
    assert _facts(streamed) == _facts(invoked)
    assert _facts(streamed)["usage"]["total_tokens"] == 10


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "escalated"])
def test_token_callbacks_see_the_same_totals_for_stream_and_invoke(kept: bool) -> None:
    from langchain_core.callbacks import UsageMetadataCallbackHandler, get_usage_metadata_callback

    chat = _pair(kept)
    totals = []
    for run in (lambda c: chat.invoke("q", config=c), lambda c: list(chat.stream("q", config=c))):
        handler = UsageMetadataCallbackHandler()  # passed in config: seen by the child runs too
        run({"callbacks": [handler]})
        with get_usage_metadata_callback() as ambient:  # the context-manager form
            run({})
        assert ambient.usage_metadata == handler.usage_metadata
        totals.append(handler.usage_metadata)
    assert totals[0] == totals[1]
    # each model call counted once, under its own model: the outer run made none of its own
    once = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    called = ["small-probe"] if kept else ["small-probe", "large-probe"]
    assert totals[0] == dict.fromkeys(called, once)


def test_stream_runs_the_inner_models_as_child_runs() -> None:
    chat = _pair(kept=False)

    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.parents: list[Any] = []
            self.tokens = 0

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.parents.append(kw.get("parent_run_id"))

        def on_llm_new_token(self, token: str, **kw: Any) -> None:
            self.tokens += 1

    runs = Runs()
    list(chat.stream("q", config={"callbacks": [runs]}))
    outer, *inner = runs.parents
    assert outer is None and len(inner) == 2 and all(p is not None for p in inner)
    assert len(set(inner)) == 1  # both children of the one outer run


# ---- options: forwarded or refused, and the LangSmith params (issue 28 items 4 and 2) --------


def test_standard_options_reach_both_models() -> None:
    chat = _pair(
        kept=False, temperature=0, max_tokens=5, timeout=1, stop=["\n"], model_kwargs={"top_p": 0.5}
    )
    chat.invoke("q")
    small, large = SEEN
    for seen in (small, large):
        assert seen["temperature"] == 0 and seen["max_tokens"] == 5 and seen["timeout"] == 1
        assert seen["stop"] == ["\n"] and seen["top_p"] == 0.5
    chat.invoke("q", temperature=0.7)  # a per-call option wins
    assert SEEN[-1]["temperature"] == 0.7


def test_unknown_options_are_refused_with_what_to_do() -> None:
    from datashunt import ConfigError

    with pytest.raises(ConfigError, match=r"does not take 'api_key', 'top_p'.*model_kwargs"):
        _pair(kept=True, api_key="x", top_p=0.1)


def test_max_retries_is_the_retry_policy() -> None:
    from datashunt import RetryPolicy

    chat = _pair(kept=True, retry=RetryPolicy(attempts=5, base_delay=0.5), max_retries=0)
    assert chat.shunt.retry.attempts == 1 and chat.shunt.retry.base_delay == 0.5
    shunt = GenerativeShunt(retry=RetryPolicy(attempts=5))
    chat = DataShuntChatModel(small=chat.small, large=chat.large, shunt=shunt, max_retries=1)
    assert chat.shunt.retry.attempts == 2 and shunt.retry.attempts == 5  # the given one is kept


def test_it_takes_a_built_shunt_and_refuses_loose_options() -> None:
    from datashunt import ConfigError

    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5), record_small=True)
    chat = DataShuntChatModel(small=ProbeChat(), large=ProbeChat(), shunt=shunt)
    assert chat.shunt is shunt
    with pytest.raises(ConfigError, match=r"shunt=GenerativeShunt.*from_policy.*'policy', 'store'"):
        DataShuntChatModel(small=ProbeChat(), large=ProbeChat(), policy=None, store="x.db")


def test_streaming_true_streams_invoke() -> None:
    chat = _pair(kept=False, streaming=True)
    assert chat.invoke("q").content == "large-probe says hi"
    assert [s["how"] for s in SEEN] == ["invoke", "stream"]


def test_langsmith_params_name_the_pair() -> None:
    chat = _pair(kept=True, temperature=0.2, max_tokens=9, stop=["x"])
    params = chat._get_ls_params()
    assert params["ls_model_name"] == "datashunt(small-probe, large-probe)"
    assert params["ls_provider"] == "datashunt" and params["ls_model_type"] == "chat"
    assert params["ls_temperature"] == 0.2 and params["ls_max_tokens"] == 9
    assert params["ls_stop"] == ["x"]
    assert chat._get_ls_params(model="other")["ls_model_name"] == "other"


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "escalated"])
async def test_astream_events_show_the_inner_models_as_children(kept: bool) -> None:
    # astream_events makes invoke stream implicitly: langchain-core then calls _astream
    # without the run manager, and the inner runs must still hang under this one
    chat = _pair(kept)
    events = [e async for e in chat.astream_events("q", version="v2")]
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    outer = starts[0]["run_id"]
    assert len(starts) == (2 if kept else 3)  # this run, the small model (and the large)
    assert all(outer in e["parent_ids"] for e in starts[1:])
    (end,) = [e for e in events if e["event"] == "on_chat_model_end" and e["run_id"] == outer]
    assert end["data"]["output"].response_metadata["datashunt"]["route"] == (
        "small" if kept else "llm"
    )


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "escalated"])
async def test_implicit_streaming_keeps_the_inner_runs_as_children(kept: bool) -> None:
    # a streaming handler (LangGraph's messages mode, astream_log) makes invoke call _stream;
    # langchain-core then passes no run manager, and the inner runs must still be children
    from langchain_core.tracers._streaming import _StreamingCallbackHandler

    class Tap(BaseCallbackHandler, _StreamingCallbackHandler):
        def __init__(self) -> None:
            self.runs: list[tuple[Any, Any]] = []

        def tap_output_aiter(self, run_id: Any, output: Any) -> Any:
            return output

        def tap_output_iter(self, run_id: Any, output: Any) -> Any:
            return output

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.runs.append((kw["run_id"], kw.get("parent_run_id")))

    chat = _pair(kept)
    for call in (chat.invoke, chat.ainvoke):
        tap = Tap()
        out = call("q", config={"callbacks": [tap]})
        out = await out if not isinstance(out, BaseMessage) else out
        assert out.response_metadata["datashunt"]["route"] == ("small" if kept else "llm")
        (outer, none), *inner = tap.runs
        assert none is None and len(inner) == (1 if kept else 2)
        assert all(parent == outer for _, parent in inner)


def test_a_stalled_stream_times_out_and_falls_back() -> None:
    from datashunt import RetryPolicy

    chat = DataShuntChatModel.from_policy(
        small=ProbeChat(name_="small-probe"),
        large=ProbeChat(name_="large-probe", stall=1.0),
        policy=GenerativePolicy("mean", 0.5),
        retry=RetryPolicy(attempts=2, base_delay=0.0, jitter=0.0),
        stream_idle_timeout=0.1,
    )
    SEEN.clear()
    (chunk,) = [c for c in chat.stream("q") if c.content]
    assert chunk.content == "small-probe says hi"  # nothing had reached the caller
    meta = chunk.response_metadata["datashunt"]
    assert meta["source"] == "fallback" and "sent nothing for 0.1s" in meta["error"]
    assert [s["how"] for s in SEEN] == ["invoke", "stream", "stream"]  # retried once
