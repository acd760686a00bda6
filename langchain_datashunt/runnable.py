"""``DataShuntRunnable``: the shunt as a LangChain runnable in front of any chat model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_executor_for_config, merge_configs
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import ConfigDict, Field, PrivateAttr

from datashunt import Shunt, ShuntPolicy, load_gate
from datashunt.errors import DataShuntError, LLMError
from datashunt.idle import aiter_with_idle_timeout, iter_with_idle_timeout
from datashunt.inputs import validate_text
from datashunt.prompts import DEFAULT_TEMPLATE
from datashunt.retry import RetryPolicy, empty_answer_error
from datashunt.types import Decision, LLMRequest

from ._convert import input_text, message_text, message_to_reply, metadata_for
from .output import ShuntOutput

__all__ = ["DECISION_EVENT", "DataShuntRunnable"]

#: Name of the custom event each input's decision is dispatched under.
DECISION_EVENT = "datashunt_decision"


@dataclass
class _Item:
    """One input of a batch after the gate pass (pure data, shared by sync and async)."""

    index: int
    text: str
    extras: dict[str, Any]
    decision: Decision
    request: LLMRequest | None


class DataShuntRunnable(RunnableSerializable[Any, ShuntOutput]):
    """A confidence gate in front of a chat model, as an LCEL runnable.

    Confident inputs are answered by the gate with no model call. The rest go to ``llm`` with
    the gate's soft hint and/or hard-pruned candidates filled into ``prompt``'s variables
    (``text``, ``labels``, ``candidates``, ``hint``, ``small_label``, ``small_confidence``, plus any
    other keys of a dict input). ``batch``/``abatch`` run one gate pass for the whole batch and
    call the model only for the uncertain subset, at most ``max_concurrency`` at a time.

    Each input's decision is dispatched as the custom event ``"datashunt_decision"`` and set as
    ``datashunt_*`` metadata on the model's child run.

    Args:
        gate: the small model (any :class:`datashunt.Gate`).
        llm: any chat model (or runnable from a prompt value to a message).
        policy: threshold and pruning settings (``datashunt calibrate`` writes one).
        prompt: a prompt template (or any runnable) over the shunt variables; default a one-turn
            classification prompt.
        prompt_mode: ``"none"``, ``"soft"``, ``"hard"`` or ``"both"``.
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path: every model call (and,
            with ``record_small``, every gate answer) is recorded.
        input_key: the text's key when the input is a dict.
        retry: how failed model calls (timeouts, refused connections, 429 with or without
            ``Retry-After``, 5xx, empty answers) are retried before ``on_llm_error`` applies;
            default :class:`datashunt.RetryPolicy`. Give the chat model ``max_retries=0`` so
            that retries are counted here, once.
        stream_idle_timeout: seconds a stream may go without a chunk before the call counts as
            failed (and, if no text has reached the caller yet, is retried); ``None``: no limit.

    Example:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from langchain_datashunt import DataShuntRunnable

            shunt = DataShuntRunnable.from_dir(
                "runs/gate", llm=ChatOpenAI(model="gpt-4o-mini", logprobs=True, top_logprobs=5)
            )
            out = shunt.invoke("The blender died after a week.")
            out.label, out.route  # ('negative', 'small')
            chain = shunt | (lambda o: o.label)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    gate: Any
    llm: Runnable[Any, BaseMessage] | BaseChatModel
    policy: ShuntPolicy | None = None
    prompt: Runnable[dict[str, Any], Any] | None = None
    prompt_mode: str = "soft"
    transfer: Any = None
    store: Any = None
    record_small: bool = True
    input_key: str = "text"
    on_llm_error: str = "fallback"
    noun: str = "text"
    synonyms: Mapping[str, Sequence[str]] | None = None
    retry: RetryPolicy | None = None
    stream_idle_timeout: float | None = None
    name: str | None = Field(default="DataShunt")

    _shunt: Shunt = PrivateAttr()
    _prompt: Runnable[dict[str, Any], Any] = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # set up here, not in model_post_init, so our ConfigError is not wrapped by pydantic
        self._shunt = Shunt(
            self.gate,
            self.policy,
            prompt_mode=self.prompt_mode,  # type: ignore[arg-type]
            transfer=self.transfer,
            store=self.store,
            record_small=self.record_small,
            on_llm_error=self.on_llm_error,  # type: ignore[arg-type]
            retry=self.retry,
            synonyms=self.synonyms,
            noun=self.noun,
        )
        self._prompt = self.prompt or ChatPromptTemplate.from_messages(
            [("human", DEFAULT_TEMPLATE)]
        )

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> DataShuntRunnable:
        """Load the gate and its saved policy from a directory (see ``datashunt calibrate``)."""
        return cls(gate=load_gate(gate_dir), policy=ShuntPolicy.load(gate_dir), **kwargs)

    @property
    def shunt(self) -> Shunt:
        """The core shunt this runnable drives (gate, policy, store, parser)."""
        return self._shunt

    # ---- pure steps -------------------------------------------------------------------------

    def _plan(self, inputs: Sequence[Any]) -> list[_Item | Exception]:
        """Validate every input, then ONE gate pass over the valid ones."""
        slots: list[_Item | Exception | None] = [None] * len(inputs)
        valid: list[tuple[int, str, dict[str, Any]]] = []
        for i, value in enumerate(inputs):
            try:
                text, extras = input_text(value, self.input_key)
                validate_text(text, max_chars=self._shunt.max_chars)
                valid.append((i, text, extras))
            except DataShuntError as exc:
                slots[i] = exc
        if valid:
            texts = [t for _, t, _ in valid]
            decisions = self._shunt.decide(texts)
            requests = iter(self._shunt.prepare(texts, decisions))
            for (i, text, extras), d in zip(valid, decisions, strict=True):
                req = next(requests) if d.route == "llm" else None
                slots[i] = _Item(i, text, extras, d, req)
        return [s for s in slots if s is not None]

    def _model_config(self, config: RunnableConfig, item: _Item) -> RunnableConfig:
        meta = metadata_for(item.decision, recorded=self._shunt.store is not None)
        return merge_configs(config, {"metadata": meta})

    def _prompt_input(self, item: _Item) -> dict[str, Any]:
        assert item.request is not None  # noqa: S101 - only called on the LLM route
        return {**item.extras, **item.request.variables}

    @staticmethod
    def _event_data(item: _Item) -> dict[str, Any]:
        d = item.decision
        return {
            "route": d.route,
            "label": d.label,
            "confidence": d.confidence,
            "probabilities": dict(d.probabilities),
            "candidates": list(d.candidates),
            "reason": d.reason,
        }

    def _finish(
        self,
        item: _Item,
        message: BaseMessage | None,
        error: BaseException | None,
        latency: float,
        run_id: str,
        attempts: int = 1,
    ) -> ShuntOutput | Exception:
        assert item.request is not None  # noqa: S101
        reply = message_to_reply(message) if message is not None else None
        try:
            result = self._shunt.finish(
                item.request,
                reply,
                error=error,
                latency_s=latency,
                run_id=run_id,
                attempts=attempts,
            )
        except LLMError as exc:
            return exc
        return ShuntOutput.from_result(result, message)

    def _small(self, items: list[_Item], run_ids: list[str]) -> list[ShuntOutput]:
        results = self._shunt.small_results(
            [it.text for it in items], [it.decision for it in items], run_ids
        )
        return [ShuntOutput.from_result(r) for r in results]

    def _retry_wait(
        self, attempt: int, error: BaseException | None, sent_text: bool
    ) -> float | None:
        """Seconds before the next streaming attempt, or None to stop (text already sent to
        the caller cannot be taken back, so such a stream is never retried)."""
        if error is None or sent_text:
            return None
        return self._shunt.retry.delay(attempt, error)

    # ---- sync -------------------------------------------------------------------------------

    def _invoke_model(self, prompt_value: Any, cfg: RunnableConfig) -> BaseMessage:
        return _non_empty(self.llm.invoke(prompt_value, cfg))

    async def _ainvoke_model(self, prompt_value: Any, cfg: RunnableConfig) -> BaseMessage:
        return _non_empty(await self.llm.ainvoke(prompt_value, cfg))

    def _call_model(
        self, item: _Item, config: RunnableConfig, run_id: str
    ) -> ShuntOutput | Exception:
        cfg = self._model_config(config, item)
        t0 = time.perf_counter()
        try:
            prompt_value = self._prompt.invoke(self._prompt_input(item), cfg)
        except Exception as exc:  # a template error is recorded, then fallback or raise
            return self._finish(item, None, exc, time.perf_counter() - t0, run_id, 0)
        # provider errors are retried per the policy, then recorded: fallback or raise
        out = self._shunt.retry.call(self._invoke_model, prompt_value, cfg)
        latency = time.perf_counter() - t0
        return self._finish(item, out.value, out.error, latency, run_id, out.attempts)

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[ShuntOutput | Exception]:
        items = self._plan(inputs)
        out: list[ShuntOutput | Exception | None] = [None] * len(inputs)
        todo: list[_Item] = []
        smalls: list[_Item] = []
        for i, item in enumerate(items):
            if isinstance(item, Exception):
                out[i] = item
                continue
            dispatch_custom_event(DECISION_EVENT, self._event_data(item), config=config[i])
            (smalls if item.request is None else todo).append(item)
        small_ids = [str(run_manager[it.index].run_id) for it in smalls]
        for item, small_out in zip(smalls, self._small(smalls, small_ids), strict=True):
            out[item.index] = small_out
        if todo:
            with get_executor_for_config(config[0]) as executor:
                done = executor.map(
                    lambda it: self._call_model(
                        it, config[it.index], str(run_manager[it.index].run_id)
                    ),
                    todo,
                )
                for item, res in zip(todo, done, strict=True):
                    out[item.index] = res
        return [o for o in out if o is not None]

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ShuntOutput:  # noqa: A002
        return self._batch_with_config(self._batch, [input], config, **kwargs)[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ShuntOutput]:
        return self._batch_with_config(
            self._batch, inputs, config, return_exceptions=return_exceptions, **kwargs
        )

    # ---- async ------------------------------------------------------------------------------

    async def _acall_model(
        self, item: _Item, config: RunnableConfig, run_id: str
    ) -> ShuntOutput | Exception:
        cfg = self._model_config(config, item)
        t0 = time.perf_counter()
        try:
            prompt_value = await self._prompt.ainvoke(self._prompt_input(item), cfg)
        except Exception as exc:
            latency = time.perf_counter() - t0
            return await asyncio.to_thread(self._finish, item, None, exc, latency, run_id, 0)
        out = await self._shunt.retry.acall(self._ainvoke_model, prompt_value, cfg)
        latency = time.perf_counter() - t0
        # parsing is cheap but the store write is blocking I/O: off the event loop
        return await asyncio.to_thread(
            self._finish, item, out.value, out.error, latency, run_id, out.attempts
        )

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[ShuntOutput | Exception]:
        items = await asyncio.to_thread(self._plan, inputs)  # the gate pass, off the loop
        out: list[ShuntOutput | Exception | None] = [None] * len(inputs)
        todo: list[_Item] = []
        smalls: list[_Item] = []
        for i, item in enumerate(items):
            if isinstance(item, Exception):
                out[i] = item
                continue
            await adispatch_custom_event(DECISION_EVENT, self._event_data(item), config=config[i])
            (smalls if item.request is None else todo).append(item)
        small_ids = [str(run_manager[it.index].run_id) for it in smalls]
        small_outs = await asyncio.to_thread(self._small, smalls, small_ids)
        for item, res in zip(smalls, small_outs, strict=True):
            out[item.index] = res
        done = await gather_with_concurrency(
            config[0].get("max_concurrency"),
            *(
                self._acall_model(it, config[it.index], str(run_manager[it.index].run_id))
                for it in todo
            ),
        )
        for item, res in zip(todo, done, strict=True):
            out[item.index] = res
        return [o for o in out if o is not None]

    async def ainvoke(
        self,
        input: Any,  # noqa: A002
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> ShuntOutput:
        return (await self._abatch_with_config(self._abatch, [input], config, **kwargs))[0]

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ShuntOutput]:
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions, **kwargs
        )

    # ---- streaming: the model's tokens flow through on the LLM route ----------------------------

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[ShuntOutput]:
        item = self._plan([_last(inputs)])[0]
        if isinstance(item, Exception):
            raise item
        dispatch_custom_event(DECISION_EVENT, self._event_data(item), config=config)
        run_id = str(run_manager.run_id)
        if item.request is None:
            yield self._small([item], [run_id])[0]
            return
        yield ShuntOutput.from_decision(item.decision)
        cfg = self._model_config(config, item)
        t0 = time.perf_counter()
        acc: BaseMessageChunk | None = None
        error: BaseException | None = None
        attempt = 0
        try:
            prompt_value = self._prompt.invoke(self._prompt_input(item), cfg)
        except Exception as exc:
            prompt_value, error = None, exc
        while prompt_value is not None:
            attempt += 1
            acc, error, sent = None, None, False
            try:
                chunks = self.llm.stream(prompt_value, cfg)
                for chunk in iter_with_idle_timeout(chunks, self.stream_idle_timeout):
                    acc = chunk if acc is None else acc + chunk  # type: ignore[assignment,operator]
                    sent = sent or bool(message_text(chunk))
                    yield ShuntOutput(message=chunk)
                _non_empty(acc)
            except Exception as exc:
                error = exc
            wait = self._retry_wait(attempt, error, sent)
            if wait is None:
                break
            time.sleep(wait)
        latency = time.perf_counter() - t0
        final = self._finish(item, acc, error, latency, run_id, attempt)
        if isinstance(final, Exception):
            raise final
        final.message = None  # the chunks already carried it; adding them up restores it
        yield final

    async def _atransform(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[ShuntOutput]:
        last: Any = None
        async for value in inputs:
            last = value
        item = (await asyncio.to_thread(self._plan, [last]))[0]
        if isinstance(item, Exception):
            raise item
        await adispatch_custom_event(DECISION_EVENT, self._event_data(item), config=config)
        run_id = str(run_manager.run_id)
        if item.request is None:
            yield (await asyncio.to_thread(self._small, [item], [run_id]))[0]
            return
        yield ShuntOutput.from_decision(item.decision)
        cfg = self._model_config(config, item)
        t0 = time.perf_counter()
        acc: BaseMessageChunk | None = None
        error: BaseException | None = None
        attempt = 0
        try:
            prompt_value = await self._prompt.ainvoke(self._prompt_input(item), cfg)
        except Exception as exc:
            prompt_value, error = None, exc
        while prompt_value is not None:
            attempt += 1
            acc, error, sent = None, None, False
            try:
                chunks = self.llm.astream(prompt_value, cfg)
                async for chunk in aiter_with_idle_timeout(chunks, self.stream_idle_timeout):
                    acc = chunk if acc is None else acc + chunk  # type: ignore[assignment,operator]
                    sent = sent or bool(message_text(chunk))
                    yield ShuntOutput(message=chunk)
                _non_empty(acc)
            except Exception as exc:
                error = exc
            wait = self._retry_wait(attempt, error, sent)
            if wait is None:
                break
            await asyncio.sleep(wait)
        latency = time.perf_counter() - t0
        final = await asyncio.to_thread(self._finish, item, acc, error, latency, run_id, attempt)
        if isinstance(final, Exception):
            raise final
        final.message = None
        yield final

    def transform(
        self,
        input: Iterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> Iterator[ShuntOutput]:
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> Iterator[ShuntOutput]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self,
        input: AsyncIterator[Any],
        config: RunnableConfig | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> AsyncIterator[ShuntOutput]:
        async for chunk in self._atransform_stream_with_config(
            input, self._atransform, config, **kwargs
        ):
            yield chunk

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> AsyncIterator[ShuntOutput]:
        async def once() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(once(), config, **kwargs):
            yield chunk


def _non_empty(message: BaseMessage | None) -> BaseMessage:
    """The model's message; an empty one (no text, no tool call) is an error worth a retry."""
    text = message_text(message) if message is not None else None
    if not getattr(message, "tool_calls", None) and (err := empty_answer_error(text)):
        raise err
    assert message is not None  # noqa: S101 - empty_answer_error(None) is an error
    return message


def _last(values: Iterator[Any]) -> Any:
    """A stream's input: inputs are not generally addable, so the last value is the input."""
    last: Any = None
    for last in values:  # noqa: B007
        pass
    return last
