"""``DataShuntChatModel``: a small chat model answers first, the large one when it is unsure."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, TypeVar

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
from pydantic import Field

from datashunt.adapters import GenerativeAdapter, generative_summary, model_name_of, refuse_unknown
from datashunt.generative import GenerativeResult, GenerativeShunt

from ._convert import as_messages
from .model_call import ChatCall

__all__ = ["DataShuntChatModel"]

# How stream()/astream() hand _stream/_astream the inner models' config: since langchain-core
# 1.8 a chat model's stream no longer passes its run manager to _stream, and the inner calls
# must still be child runs of this one (traces, token callbacks).
_CHILD = "_datashunt_child_config"
# The same for an invoke that streams implicitly (a streaming handler is attached, e.g.
# LangGraph's messages mode): _should_stream sees the run manager, _stream is called next
# in the same context without it.
_IMPLICIT: ContextVar[Any] = ContextVar("datashunt_chat_run", default=None)

_PROVIDER_OPTIONS = (
    "set provider options on the small and large models (e.g. ChatOpenAI(api_key=..., "
    "top_p=...)), or pass model_kwargs={...} to send them to both with every call"
)
# The LangChain standard parameters, forwarded to both models at every call.
_FORWARDED = ("temperature", "max_tokens", "timeout")

M = TypeVar("M", bound=BaseMessage)


class DataShuntChatModel(GenerativeAdapter, BaseChatModel):
    """A LangChain chat model over a small and a large one, routed by the small answer's
    confidence.

    The small model answers every prompt (it must return token logprobs: ``ChatOpenAI(...,
    logprobs=True, top_logprobs=1)`` against the local server, which sends none without
    ``top_logprobs``); its answer stands when the policy's measure clears δ, else the large
    model answers. ``invoke``, ``stream``, ``batch`` and their async forms work as on any chat
    model; callbacks see both inner calls as child runs, and only they report token usage (the
    answer returned still carries its model's ``usage_metadata``). A stream sends the large
    answer as it comes (its usage, finish reason, model name, tool-call chunks and id kept) or
    the kept small answer as one chunk; ``response_metadata["datashunt"]`` tells the route
    either way. Tool calling (``bind_tools``) and structured output go to the large model.

    Args:
        small: the small chat model (logprobs on).
        large: the large chat model.
        shunt: the core's :class:`~datashunt.generative.GenerativeShunt` (policy, store, retry,
            ``on_llm_error``); or build one with :meth:`from_policy`, which takes its options
            (``store=``, ``record_small=``, ``retry=``, ``on_llm_error=``) as keywords.
        temperature, max_tokens, timeout, stop: sent to both models with every call.
        max_retries: retries of a failed call (the shunt's retry policy, ``max_retries + 1``
            attempts); give the inner models ``max_retries=0``.
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

            chat = DataShuntChatModel.from_policy(
                GenerativePolicy("mean", 0.7),
                small=ChatOpenAI(
                    base_url=server.base_url, api_key="x", logprobs=True, top_logprobs=1
                ),
                large=ChatOpenAI(model="gpt-4o-mini", max_retries=0),
                store="calls.db",
            )
            chat.invoke("What is the sentiment of 'a fine film'?").content
    """

    small: BaseChatModel
    large: BaseChatModel
    shunt: GenerativeShunt = Field(default_factory=GenerativeShunt)
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    stop: list[str] | None = None
    max_retries: int | None = None
    streaming: bool = False
    stream_idle_timeout: float | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        # checked here, not in pydantic validators, so our ConfigError is not wrapped
        self.refuse_loose_options(kwargs)
        fields = DataShuntChatModel.model_fields
        known = set(fields) | {f.alias for f in fields.values() if f.alias}
        refuse_unknown("DataShuntChatModel", kwargs, known, _PROVIDER_OPTIONS)
        if kwargs.get("max_retries") is not None:  # a standard parameter: the shunt's retry
            shunt = copy.copy(kwargs.get("shunt") or GenerativeShunt())
            shunt.retry = replace(shunt.retry, attempts=kwargs["max_retries"] + 1)
            kwargs["shunt"] = shunt
        super().__init__(**kwargs)

    @property
    def _llm_type(self) -> str:
        return "datashunt-generative"

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

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        return _with_usage(super().invoke(input, config, **kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        return _with_usage(await super().ainvoke(input, config, **kwargs))

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        config, child = self._with_child(config, CallbackManager)
        return (_with_usage(c) for c in super().stream(input, config, **{_CHILD: child}, **kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        config, child = self._with_child(config, AsyncCallbackManager)
        async for chunk in super().astream(input, config, **{_CHILD: child}, **kwargs):
            yield _with_usage(chunk)

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
        self, messages: list[BaseMessage], stop: Any, run_manager: Any, kwargs: dict[str, Any]
    ) -> tuple[Any, list[BaseMessage], ChatCall, ChatCall]:
        """What the shunt asks: the messages as the store records them, the payload, and the
        small and large models' calls under this run's config and options."""
        child, implicit = kwargs.pop(_CHILD, None), _IMPLICIT.get()
        _IMPLICIT.set(None)  # read once: a later call must not take this run as its parent
        if run_manager is None and child is None:
            run_manager = implicit
        config = self._inner_config(run_manager, child)
        options = {k: getattr(self, k) for k in _FORWARDED if getattr(self, k) is not None}
        options = {**self.model_kwargs, **options, **kwargs, "stop": stop or self.stop}
        small, large = ChatCall(self.small, config, options), ChatCall(self.large, config, options)
        return as_messages(messages), messages, small, large

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = self.shunt.ask(*self._calls(messages, stop, run_manager, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = await self.shunt.aask(*self._calls(messages, stop, run_manager, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(result))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # LangChain reports each chunk to the callbacks itself: no on_llm_new_token here
        calls = self._calls(messages, stop, run_manager, kwargs)
        yield from map(_chunk, self.shunt.stream(*calls, idle_timeout=self.stream_idle_timeout))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        calls = self._calls(messages, stop, run_manager, kwargs)
        async for item in self.shunt.astream(*calls, idle_timeout=self.stream_idle_timeout):
            yield _chunk(item)


def _unreported(message: M) -> M:
    """``message`` without its token usage, kept aside in ``response_metadata``: the inner run
    that made the call reported it, and this run must not count it again."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return message
    meta = {**message.response_metadata, "datashunt": {"usage": usage}}
    return message.model_copy(update={"usage_metadata": None, "response_metadata": meta})


def _with_usage(message: M) -> M:
    """The message as the caller gets it: the usage this run left unreported put back."""
    meta = message.response_metadata.get("datashunt") or {}
    if "usage" not in meta:
        return message
    rest = {
        **message.response_metadata,
        "datashunt": {k: v for k, v in meta.items() if k != "usage"},
    }
    return message.model_copy(update={"usage_metadata": meta["usage"], "response_metadata": rest})


def _message(result: GenerativeResult) -> AIMessage:
    """The answer as this run reports it: the answering model's own message (finish reason,
    model name, tool calls, id, usage aside), with the route in ``response_metadata``."""
    chosen = result.reply if result.source == "llm" else result.small
    raw = chosen.raw if chosen is not None else None
    base = _unreported(raw if isinstance(raw, AIMessage) else AIMessage(content=result.text))
    meta = base.response_metadata.get("datashunt", {})
    route = {**base.response_metadata, "datashunt": {**meta, **generative_summary(result)}}
    return base.model_copy(update={"response_metadata": route})


def _chunk(item: Any) -> ChatGenerationChunk:
    """A streamed chunk: the large model's, its usage aside (see :func:`_unreported`); or the
    last one, with the route and the whole answer unless the large model's chunks carried it
    (then its content is empty, of the kind theirs added up to)."""
    if not isinstance(item, GenerativeResult):
        return ChatGenerationChunk(message=_unreported(item))
    if item.source == "llm":
        streamed = getattr(item.reply.raw if item.reply else None, "content", "")
        empty: Any = [] if isinstance(streamed, list) else ""
        meta = {"datashunt": generative_summary(item)}
        return ChatGenerationChunk(
            message=AIMessageChunk(content=empty, response_metadata=meta, chunk_position="last")
        )
    message = _message(item)
    fields = message.model_dump(exclude={"type", "tool_calls", "invalid_tool_calls"})
    calls = [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    return ChatGenerationChunk(
        message=AIMessageChunk(**fields, tool_call_chunks=calls, chunk_position="last")
    )
