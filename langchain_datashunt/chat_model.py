"""``DataShuntChatModel``: a small chat model answers first, the large one when it is unsure.

The route is decided by the small answer's sequence confidence (the core's
:class:`datashunt.generative.GenerativeShunt`: judge, keep or escalate, retried and recorded);
this module contributes only the lines that call the LangChain models.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, PrivateAttr

from datashunt import LLMReply, RetryPolicy
from datashunt.generative import GenerativePolicy, GenerativeResult, GenerativeShunt, Judgement
from datashunt.types import Message

from ._convert import as_messages, message_to_reply, model_name_of

__all__ = ["DataShuntChatModel"]


class DataShuntChatModel(BaseChatModel):
    """A LangChain chat model over a small and a large one, routed by the small answer's
    confidence.

    The small model answers every prompt (it must return token logprobs: ``ChatOpenAI(...,
    logprobs=True)`` against the local server); its answer stands when the policy's measure
    clears δ, else the large model answers. ``invoke``, ``stream``, ``batch`` and their async
    forms work as on any chat model, and callbacks see both inner calls as child runs. Tool
    calling (``bind_tools``) and structured output (``with_structured_output``) go to the large
    model. Every escalation is recorded in ``store`` (the messages sent, the large answer, the
    small answer and its confidence).

    Args:
        small: the small chat model (logprobs on).
        large: the large chat model.
        policy: the measure and δ (``datashunt.generative.calibrate_generative``).
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        record_small: also record small answers that stood.
        retry: how failed large calls are retried; give the large model ``max_retries=0``.
        on_llm_error: ``"fallback"`` answers with the small model's answer when the large call
            fails; ``"raise"`` raises.

    Example:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from datashunt.generative import GenerativePolicy
            from langchain_datashunt import DataShuntChatModel

            chat = DataShuntChatModel(
                small=ChatOpenAI(base_url=server.base_url, api_key="x", logprobs=True),
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

    _shunt: GenerativeShunt = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # set up here, not in model_post_init, so our ConfigError is not wrapped by pydantic
        self._shunt = GenerativeShunt(
            self.policy,
            store=self.store,
            record_small=self.record_small,
            retry=self.retry,
            on_llm_error=self.on_llm_error,  # type: ignore[arg-type]
            model_name=model_name_of(self.large),
        )

    @property
    def _llm_type(self) -> str:
        return "datashunt-generative"

    @property
    def shunt(self) -> GenerativeShunt:
        """The core's generative gate (policy, store)."""
        return self._shunt

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

    def _config(self, run_manager: Any) -> RunnableConfig:
        """The inner models' config: their runs are children of this one (a chat model's run
        manager has no ``get_child``; this is what a chain's does)."""
        if run_manager is None:
            return {}
        async_ = isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        manager = (AsyncCallbackManager if async_ else CallbackManager)(
            handlers=[], parent_run_id=run_manager.run_id
        )
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        return {"callbacks": manager}

    def _judged(self, message: BaseMessage) -> tuple[LLMReply, Judgement]:
        small = message_to_reply(message)
        return small, self._shunt.judge(small)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._config(run_manager)
        core = as_messages(messages)
        small, judgement = self._judged(self.small.invoke(messages, config, stop=stop, **kwargs))
        if judgement.accept:
            return _result(self._shunt.keep(core, small, judgement))

        def send() -> LLMReply:
            return message_to_reply(self.large.invoke(messages, config, stop=stop, **kwargs))

        name = model_name_of(self.large)
        return _result(self._shunt.escalate(core, small, judgement, send, model_name=name))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._config(run_manager)
        core = as_messages(messages)
        answer = await self.small.ainvoke(messages, config, stop=stop, **kwargs)
        small, judgement = self._judged(answer)
        if judgement.accept:
            import asyncio

            return _result(await asyncio.to_thread(self._shunt.keep, core, small, judgement))

        async def send() -> LLMReply:
            return message_to_reply(await self.large.ainvoke(messages, config, stop=stop, **kwargs))

        name = model_name_of(self.large)
        return _result(await self._shunt.aescalate(core, small, judgement, send, model_name=name))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # The small answer is judged whole (its confidence needs every token), then either it
        # is sent as one chunk or the large model's answer is streamed as it comes.
        config = self._config(run_manager)
        core = as_messages(messages)
        small, judgement = self._judged(self.small.invoke(messages, config, stop=stop, **kwargs))
        if judgement.accept:
            yield _chunk(self._shunt.keep(core, small, judgement), run_manager)
            return
        t0, acc = time.perf_counter(), None
        try:
            for piece in self.large.stream(messages, config, stop=stop, **kwargs):
                acc = piece if acc is None else acc + piece
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.content))
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        except Exception as exc:
            # recorded; raised when text already reached the caller or on_llm_error="raise",
            # else the small answer is the fallback
            res = self._conclude_stream(core, small, judgement, acc, exc, t0)
            yield _chunk(res, run_manager)
            return
        self._conclude_stream(core, small, judgement, acc, None, t0)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        import asyncio

        config = self._config(run_manager)
        core = as_messages(messages)
        answer = await self.small.ainvoke(messages, config, stop=stop, **kwargs)
        small, judgement = self._judged(answer)
        if judgement.accept:
            kept = await asyncio.to_thread(self._shunt.keep, core, small, judgement)
            chunk = _chunk(kept, None)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            return
        t0, acc = time.perf_counter(), None
        try:
            async for piece in self.large.astream(messages, config, stop=stop, **kwargs):
                acc = piece if acc is None else acc + piece
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.content))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        except Exception as exc:
            args = (core, small, judgement, acc, exc, t0)
            res = await asyncio.to_thread(self._conclude_stream, *args)
            yield _chunk(res, None)
            return
        await asyncio.to_thread(self._conclude_stream, core, small, judgement, acc, None, t0)

    def _conclude_stream(
        self,
        core: Sequence[Message],
        small: LLMReply,
        judgement: Judgement,
        acc: Any,
        error: BaseException | None,
        t0: float,
    ) -> GenerativeResult:
        """Record a streamed escalation. An error after text reached the caller is raised as
        it is (a fallback answer cannot be appended to half an answer)."""
        reply = message_to_reply(acc) if acc is not None and error is None else None
        args = (reply, error, time.perf_counter() - t0, 1, model_name_of(self.large))
        result = self._shunt.conclude(core, small, judgement, *args)
        if error is not None and acc is not None:
            raise error
        return result


def _meta(result: GenerativeResult) -> dict[str, Any]:
    j = result.judgement
    return {
        "route": result.route,
        "source": result.source,
        "score": j.score,
        "reason": j.reason,
        "small_answer": result.small.text,
        "error": result.error,
        "record_id": result.record_id,
    }


def _message(result: GenerativeResult) -> AIMessage:
    chosen = result.reply if result.source == "llm" else result.small
    raw = chosen.raw if chosen is not None else None
    base = raw if isinstance(raw, AIMessage) else AIMessage(content=result.text)
    meta = {**base.response_metadata, "datashunt": _meta(result)}
    return base.model_copy(update={"response_metadata": meta})


def _result(result: GenerativeResult) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=_message(result))])


def _chunk(result: GenerativeResult, run_manager: Any) -> ChatGenerationChunk:
    message = _message(result)
    chunk = ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content, response_metadata=dict(message.response_metadata)
        )
    )
    if isinstance(run_manager, CallbackManagerForLLMRun):
        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
    return chunk
