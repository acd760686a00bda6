"""``DataShuntChatModel``: a small chat model answers first, the large one when it is unsure.

The route is decided by the small answer's sequence confidence; the core's
:class:`datashunt.generative.GenerativeShunt` asks, judges, keeps or escalates, and times,
retries and records both calls. This module contributes only the lines that call the LangChain
models (:class:`_ChatCall`) and the translation of the result into LangChain messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from pydantic import ConfigDict, Field, PrivateAttr

from datashunt import ConfigError, LLMReply, RetryPolicy
from datashunt.adapters import ModelCall
from datashunt.generative import GenerativePolicy, GenerativeResult, GenerativeShunt

from ._convert import as_messages, message_text, message_to_reply, model_name_of

__all__ = ["DataShuntChatModel"]

# How stream()/astream() hand _stream/_astream the inner models' config: since langchain-core
# 1.8 a chat model's stream no longer passes its run manager to _stream, and the inner calls
# must still be child runs of this one (traces, token callbacks).
_CHILD = "_datashunt_child_config"
# The same for an invoke that streams implicitly (a streaming handler is attached, e.g.
# LangGraph's messages mode): _should_stream sees the run manager, _stream is called next
# in the same context without it.
_IMPLICIT: ContextVar[Any] = ContextVar("datashunt_chat_run", default=None)

# The LangChain standard parameters, forwarded to both models at every call.
_FORWARDED = ("temperature", "max_tokens", "timeout")


class DataShuntChatModel(BaseChatModel):
    """A LangChain chat model over a small and a large one, routed by the small answer's
    confidence.

    The small model answers every prompt (it must return token logprobs: ``ChatOpenAI(...,
    logprobs=True, top_logprobs=1)`` against the local server, which sends none without
    ``top_logprobs``); its answer stands when the policy's measure
    clears δ, else the large model answers. ``invoke``, ``stream``, ``batch`` and their async
    forms work as on any chat model, and callbacks see both inner calls as child runs. A stream
    sends the large answer as it comes (its usage, finish reason, model name, tool-call chunks
    and id kept) or the kept small answer as one chunk; ``response_metadata["datashunt"]``
    tells the route either way. Tool calling (``bind_tools``) and structured output
    (``with_structured_output``) go to the large model. Every escalation is recorded in
    ``store`` (the messages sent, the large answer, the small answer and its confidence).

    Args:
        small: the small chat model (logprobs on).
        large: the large chat model.
        policy: the measure and δ (``datashunt.generative.calibrate_generative``).
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        record_small: also record small answers that stood.
        retry: how failed calls are retried (both models); give them ``max_retries=0``.
        on_llm_error: ``"fallback"`` answers with the small model's answer when the large call
            fails; ``"raise"`` raises.
        temperature, max_tokens, timeout, stop: sent to both models with every call.
        max_retries: retries of a failed call (``retry=RetryPolicy(attempts=max_retries + 1)``).
        streaming: ``invoke`` streams the large model's answer (as ``ChatOpenAI``'s).
        stream_idle_timeout: seconds the large model's stream may go without a chunk before
            the call counts as failed (retried while nothing reached the caller); ``None``
            waits as long as the model's own timeout.
        model_kwargs: further call options, sent to both models with every call. Any other
            option is refused: this model holds no provider settings of its own.

    Example:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from datashunt.generative import GenerativePolicy
            from langchain_datashunt import DataShuntChatModel

            chat = DataShuntChatModel(
                small=ChatOpenAI(
                    base_url=server.base_url, api_key="x", logprobs=True, top_logprobs=1
                ),
                large=ChatOpenAI(model="gpt-4o-mini", max_retries=0),
                policy=GenerativePolicy("mean", 0.7),
                store="calls.db",
            )
            chat.invoke("What is the sentiment of 'a fine film'?").content
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    small: BaseChatModel
    large: BaseChatModel
    policy: GenerativePolicy = GenerativePolicy()
    store: Any = None
    record_small: bool = False
    retry: RetryPolicy | None = None
    on_llm_error: str = "fallback"
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    stop: list[str] | None = None
    max_retries: int | None = None
    streaming: bool = False
    stream_idle_timeout: float | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    _shunt: GenerativeShunt = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        # checked here, not in pydantic validators, so our ConfigError is not wrapped
        _refuse_unknown(kwargs)
        super().__init__(**kwargs)
        retry = self.retry
        if self.max_retries is not None:
            if retry is not None:
                raise ConfigError("give retry= or max_retries=, not both")
            retry = RetryPolicy(attempts=self.max_retries + 1)
        self._shunt = GenerativeShunt(
            self.policy,
            store=self.store,
            record_small=self.record_small,
            retry=retry,
            on_llm_error=self.on_llm_error,  # type: ignore[arg-type]
            model_name=model_name_of(self.large),
        )

    @property
    def _llm_type(self) -> str:
        return "datashunt-generative"

    @property
    def shunt(self) -> GenerativeShunt:
        """The core's generative gate (policy, store, retry)."""
        return self._shunt

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop or self.stop, **kwargs)
        params["ls_provider"] = "datashunt"
        # the pair, a name no price table holds: the inner calls are traced (and priced) as
        # child runs under their own names
        pair = f"datashunt({model_name_of(self.small)}, {model_name_of(self.large)})"
        model = kwargs.get("model")
        params["ls_model_name"] = model if isinstance(model, str) and model else pair
        return params

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs.pop(_CHILD, None)  # a run manager, not an option: never traced
        return super()._get_invocation_params(stop=stop, **kwargs)

    # ---- tools and structured output: the large model's job ----------------------------------

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The large model with ``tools`` bound: a small model is not trusted to call tools."""
        return self.large.bind_tools(tools, **kwargs)

    def with_structured_output(
        self, schema: Any, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """The large model's structured output."""
        return self.large.with_structured_output(schema, **kwargs)

    # ---- the steps ----------------------------------------------------------------------------

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, child = self._with_child(config, CallbackManager)
        return super().stream(input, config, stop=stop, **{_CHILD: child}, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, child = self._with_child(config, AsyncCallbackManager)
        return super().astream(input, config, stop=stop, **{_CHILD: child}, **kwargs)

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        streams = super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)
        _IMPLICIT.set(run_manager if streams else None)
        return streams

    def _with_child(self, config: RunnableConfig | None, manager: Any) -> tuple[Any, Any]:
        """This run's config with its id fixed, and the inner models' config: child runs of it
        that inherit its callbacks, tags and metadata."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        inner = manager.configure(
            config.get("callbacks"),
            None,
            self.verbose,
            config.get("tags"),
            None,
            config.get("metadata"),
        )
        inner.parent_run_id = run_id
        return {**config, "run_id": run_id}, {"callbacks": inner}

    def _inner_config(self, run_manager: Any, child: Any) -> RunnableConfig:
        """The inner models' config: their runs are children of this one (a chat model's run
        manager has no ``get_child``; this is what a chain's does)."""
        if run_manager is None:
            return child if child is not None else {}
        async_ = isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        manager = (AsyncCallbackManager if async_ else CallbackManager)(
            handlers=[], parent_run_id=run_manager.run_id
        )
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        return {"callbacks": manager}

    def _calls(
        self, run_manager: Any, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[_ChatCall, _ChatCall]:
        child, implicit = kwargs.pop(_CHILD, None), _IMPLICIT.get()
        _IMPLICIT.set(None)  # read once: a later call must not take this run as its parent
        if run_manager is None and child is None:
            run_manager = implicit
        config = self._inner_config(run_manager, child)
        options = {k: getattr(self, k) for k in _FORWARDED if getattr(self, k) is not None}
        options = {**self.model_kwargs, **options, **kwargs}
        stop = stop or self.stop
        return _ChatCall(self.small, config, stop, options), _ChatCall(
            self.large, config, stop, options
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        calls = self._calls(run_manager, stop, kwargs)
        result = self._shunt.ask(as_messages(messages), messages, *calls)
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        calls = self._calls(run_manager, stop, kwargs)
        result = await self._shunt.aask(as_messages(messages), messages, *calls)
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # LangChain reports each chunk to the callbacks itself: no on_llm_new_token here
        calls = self._calls(run_manager, stop, kwargs)
        last: Any = ""
        idle = self.stream_idle_timeout
        for item in self._shunt.stream(as_messages(messages), messages, *calls, idle_timeout=idle):
            if isinstance(item, GenerativeResult):
                yield _closing(item, last)
            else:
                last = item.content
                yield ChatGenerationChunk(message=item)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        calls = self._calls(run_manager, stop, kwargs)
        last: Any = ""
        idle = self.stream_idle_timeout
        streamed = self._shunt.astream(as_messages(messages), messages, *calls, idle_timeout=idle)
        async for item in streamed:
            if isinstance(item, GenerativeResult):
                yield _closing(item, last)
            else:
                last = item.content
                yield ChatGenerationChunk(message=item)


class _ChatCall(ModelCall[list[BaseMessage]]):
    """One LangChain chat model, called with this run's config and options."""

    def __init__(
        self,
        model: BaseChatModel,
        config: RunnableConfig,
        stop: list[str] | None,
        options: dict[str, Any],
    ) -> None:
        self.model, self.config, self.stop, self.options = model, config, stop, options
        self.model_name = model_name_of(model)

    def send(self, payload: list[BaseMessage]) -> LLMReply:
        return message_to_reply(
            self.model.invoke(payload, self.config, stop=self.stop, **self.options)
        )

    async def asend(self, payload: list[BaseMessage]) -> LLMReply:
        return message_to_reply(
            await self.model.ainvoke(payload, self.config, stop=self.stop, **self.options)
        )

    def stream(self, payload: list[BaseMessage]) -> Iterator[Any]:
        return self.model.stream(payload, self.config, stop=self.stop, **self.options)

    def astream(self, payload: list[BaseMessage]) -> AsyncIterator[Any]:
        return self.model.astream(payload, self.config, stop=self.stop, **self.options)

    def is_empty(self, reply: LLMReply) -> bool:
        # a message that calls a tool is an answer even with no text
        return not reply.text.strip() and not getattr(reply.raw, "tool_calls", None)

    def chunk_text(self, chunk: Any) -> str:
        # a tool-call chunk reached the caller as surely as text: no retry after it either
        return message_text(chunk) or json.dumps(getattr(chunk, "tool_call_chunks", None) or "")

    def reply(self, acc: Any) -> LLMReply:
        return message_to_reply(acc)


def _refuse_unknown(kwargs: dict[str, Any]) -> None:
    fields = DataShuntChatModel.model_fields
    known = set(fields) | {f.alias for f in fields.values() if f.alias}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ConfigError(
            f"DataShuntChatModel does not take {names}: set provider options on the small and "
            f"large models (e.g. ChatOpenAI(api_key=..., top_p=...)), or pass "
            f"model_kwargs={{...}} to send them to both with every call"
        )


def _meta(result: GenerativeResult) -> dict[str, Any]:
    j = result.judgement
    return {
        "route": result.route,
        "source": result.source,
        "score": j.score,
        "reason": j.reason,
        "small_answer": result.small.text if result.small is not None else None,
        "error": result.error,
        "small_error": result.small_error,
        "record_id": result.record_id,
    }


def _message(result: GenerativeResult) -> AIMessage:
    """The answer as ``invoke`` returns it: the answering model's own message (usage, finish
    reason, model name, tool calls, id), with the route in ``response_metadata``."""
    chosen = result.reply if result.source == "llm" else result.small
    raw = chosen.raw if chosen is not None else None
    base = raw if isinstance(raw, AIMessage) else AIMessage(content=result.text)
    meta = {**base.response_metadata, "datashunt": _meta(result)}
    return base.model_copy(update={"response_metadata": meta})


def _closing(result: GenerativeResult, last: Any) -> ChatGenerationChunk:
    """The stream's last chunk: the route, and the whole answer unless the large model's
    chunks already carried it (``last``: their content, for a chunk of the same kind)."""
    if result.source == "llm":
        empty: Any = "" if isinstance(last, str) else []
        meta = {"datashunt": _meta(result)}
        return ChatGenerationChunk(
            message=AIMessageChunk(content=empty, response_metadata=meta, chunk_position="last")
        )
    message = _message(result)
    fields = message.model_dump(exclude={"type", "tool_calls", "invalid_tool_calls"})
    calls = [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    return ChatGenerationChunk(
        message=AIMessageChunk(**fields, tool_call_chunks=calls, chunk_position="last")
    )
