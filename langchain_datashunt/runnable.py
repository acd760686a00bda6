"""``DataShuntRunnable``: the shunt as a LangChain runnable in front of any chat model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_executor_for_config, merge_configs
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import ConfigDict, Field, PrivateAttr

from datashunt import (
    DEFAULT_TEMPLATE,
    LLMError,
    RetryPolicy,
    Shunt,
    ShuntPolicy,
    ShuntResult,
    load_gate,
)
from datashunt.registry import Follower, GateRegistry, as_registry

from ._convert import metadata_for
from .model_call import ChatModelCall
from .output import ShuntOutput
from .planning import Item, event_data, plan_batch
from .watching import (
    DRIFT_EVENT,
    RECEIPT_EVENT,
    AlarmInbox,
    aask_audit,
    ask_audit,
    audited,
    merge_audit,
)

__all__ = ["DECISION_EVENT", "DataShuntRunnable"]

#: Name of the custom event each input's decision is dispatched under.
DECISION_EVENT = "datashunt_decision"


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
        audit_rate / audit_seed / drift / prices: as :class:`datashunt.Shunt`'s. Each
            result's receipt is dispatched as the custom event ``"datashunt_receipt"``, a drift
            alarm as ``"datashunt_drift"``.

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
    audit_rate: float = 0.0
    audit_seed: int | None = None
    drift: Any = None
    prices: Mapping[str, Any] | None = None
    name: str | None = Field(default="DataShunt")

    _shunt: Shunt = PrivateAttr()
    _prompt: Runnable[dict[str, Any], Any] = PrivateAttr()
    _alarms: AlarmInbox = PrivateAttr()
    _follower: Follower | None = PrivateAttr(default=None)

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
            audit_rate=self.audit_rate,
            audit_seed=self.audit_seed,
            drift=self.drift,
            prices=self.prices,
        )
        self._alarms = AlarmInbox(self._shunt)
        self._prompt = self.prompt or ChatPromptTemplate.from_messages(
            [("human", DEFAULT_TEMPLATE)]
        )

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> DataShuntRunnable:
        """Load the gate and its saved policy from a directory (see ``datashunt calibrate``)."""
        return cls(gate=load_gate(gate_dir), policy=ShuntPolicy.load(gate_dir), **kwargs)

    @classmethod
    def from_registry(
        cls,
        registry: GateRegistry | str | Path,
        version: str | None = None,
        *,
        follow: bool = False,
        interval: float = 5.0,
        **kwargs: Any,
    ) -> DataShuntRunnable:
        """Serve ``version`` of a gate registry (default its champion); with ``follow=True``
        keep serving the champion as ``datashunt loop`` promotes or rolls back (the swap
        happens between decisions; ``runnable.follower.stop()`` ends it)."""
        reg = as_registry(registry)
        gate, policy = reg.load(version)
        runnable = cls(gate=gate, policy=policy, **kwargs)
        name = version or reg.champion()
        runnable._shunt.swap(gate, policy, version=name)  # records the version it serves
        if follow:
            runnable._follower = runnable._shunt.follow(reg, interval=interval, pin=version)
        return runnable

    @property
    def follower(self) -> Follower | None:
        """The :class:`~datashunt.registry.Follower` of ``from_registry(follow=True)``."""
        return self._follower

    @property
    def shunt(self) -> Shunt:
        """The core shunt this runnable drives (gate, policy, store, parser)."""
        return self._shunt

    # ---- pure steps -------------------------------------------------------------------------

    def _call_config(self, item: Item, config: RunnableConfig) -> RunnableConfig:
        """The model's run config: the decision as ``datashunt_*`` metadata."""
        receipt = self._shunt.receipt_of(item.decision).to_json()
        meta = metadata_for(item.decision, recorded=self._shunt.store is not None, receipt=receipt)
        return merge_configs(config, {"metadata": meta})

    def _call(self, item: Item, config: RunnableConfig) -> ChatModelCall:
        """How this input's model call is made: the prompt and model under its own config."""
        return ChatModelCall(self._prompt, self.llm, self._call_config(item, config), item.extras)

    @staticmethod
    def _output(result: ShuntResult) -> ShuntOutput:
        return ShuntOutput.from_result(result, result.reply.raw if result.reply else None)

    def _small(self, items: list[Item], run_ids: list[str]) -> list[ShuntOutput]:
        results = self._shunt.small_results(
            [it.text for it in items], [it.decision for it in items], run_ids
        )
        return [ShuntOutput.from_result(r) for r in results]

    # ---- sync -------------------------------------------------------------------------------

    def _ask(self, item: Item, config: RunnableConfig, run_id: str) -> ShuntOutput | Exception:
        assert item.request is not None  # noqa: S101 - only called on the LLM route
        try:
            result = self._shunt.ask(item.request, self._call(item, config), run_id=run_id)
        except LLMError as exc:
            return exc
        return self._output(result)

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[ShuntOutput | Exception]:
        plan = plan_batch(self._shunt, inputs, self.input_key, strict=strict)
        out: list[ShuntOutput | Exception | None] = plan.errors()
        smalls, todo = plan.small, plan.asks
        for item in plan.decided:
            dispatch_custom_event(
                DECISION_EVENT, event_data(item.decision), config=config[item.index]
            )
        small_ids = [str(run_manager[it.index].run_id) for it in smalls]
        for item, small_out in zip(smalls, self._small(smalls, small_ids), strict=True):
            out[item.index] = small_out
        checks = audited(self._shunt, smalls)
        if todo or checks:
            with get_executor_for_config(config[0]) as executor:
                audits = executor.map(
                    lambda it: ask_audit(self._shunt, it, self._call(it, config[it.index])), checks
                )
                done = executor.map(
                    lambda it: self._ask(it, config[it.index], str(run_manager[it.index].run_id)),
                    todo,
                )
                for item, res in zip(todo, done, strict=True):
                    out[item.index] = res
                for item, check in zip(checks, audits, strict=True):
                    out[item.index] = merge_audit(out[item.index], check)  # type: ignore[arg-type]
        for name, data, cfg in self._events(out, config):
            dispatch_custom_event(name, data, config=cfg)
        return [o for o in out if o is not None]

    def _events(
        self, out: Sequence[ShuntOutput | Exception | None], config: list[RunnableConfig]
    ) -> list[tuple[str, Any, RunnableConfig]]:
        """The receipt of each output and any drift alarm, as custom events to dispatch."""
        events: list[tuple[str, Any, RunnableConfig]] = [
            (RECEIPT_EVENT, o.receipt, config[i])
            for i, o in enumerate(out)
            if isinstance(o, ShuntOutput) and o.receipt is not None
        ]
        events += [(DRIFT_EVENT, alarm, config[0]) for alarm in self._alarms.take()]
        return events

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ShuntOutput:  # noqa: A002
        return self._batch_with_config(self._batch, [input], config, strict=True, **kwargs)[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ShuntOutput]:
        # without return_exceptions, one bad input fails the batch before any paid call
        return self._batch_with_config(
            self._batch,
            inputs,
            config,
            return_exceptions=return_exceptions,
            strict=not return_exceptions,
            **kwargs,
        )

    # ---- async ------------------------------------------------------------------------------

    async def _aask(
        self, item: Item, config: RunnableConfig, run_id: str
    ) -> ShuntOutput | Exception:
        assert item.request is not None  # noqa: S101 - only called on the LLM route
        try:
            result = await self._shunt.aask(item.request, self._call(item, config), run_id=run_id)
        except LLMError as exc:
            return exc
        return self._output(result)

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[ShuntOutput | Exception]:
        # the gate pass, off the event loop
        plan = await asyncio.to_thread(
            plan_batch, self._shunt, inputs, self.input_key, strict=strict
        )
        out: list[ShuntOutput | Exception | None] = plan.errors()
        smalls, todo = plan.small, plan.asks
        for item in plan.decided:
            await adispatch_custom_event(
                DECISION_EVENT, event_data(item.decision), config=config[item.index]
            )
        small_ids = [str(run_manager[it.index].run_id) for it in smalls]
        small_outs = await asyncio.to_thread(self._small, smalls, small_ids)
        for item, res in zip(smalls, small_outs, strict=True):
            out[item.index] = res
        checks = audited(self._shunt, smalls)
        done = await gather_with_concurrency(
            config[0].get("max_concurrency"),
            *(self._aask(it, config[it.index], str(run_manager[it.index].run_id)) for it in todo),
            *(aask_audit(self._shunt, it, self._call(it, config[it.index])) for it in checks),
        )
        for item, res in zip(todo, done, strict=False):
            out[item.index] = res
        for item, check in zip(checks, done[len(todo) :], strict=True):
            out[item.index] = merge_audit(out[item.index], check)  # type: ignore[arg-type]
        for name, data, cfg in self._events(out, config):
            await adispatch_custom_event(name, data, config=cfg)
        return [o for o in out if o is not None]

    async def ainvoke(
        self,
        input: Any,  # noqa: A002
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> ShuntOutput:
        outs = await self._abatch_with_config(self._abatch, [input], config, strict=True, **kwargs)
        return outs[0]

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ShuntOutput]:
        return await self._abatch_with_config(
            self._abatch,
            inputs,
            config,
            return_exceptions=return_exceptions,
            strict=not return_exceptions,
            **kwargs,
        )

    # ---- streaming: the model's tokens flow through on the LLM route ----------------------------

    def _final(self, value: Any) -> ShuntOutput:
        """The last item of an engine stream: the result, without the message the chunks
        already carried (adding the chunks up restores it)."""
        if isinstance(value, LLMError):
            raise value
        out = self._output(value)
        out.message = None
        return out

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[ShuntOutput]:
        (item,) = plan_batch(self._shunt, [_last(inputs)], self.input_key, strict=True).decided
        dispatch_custom_event(DECISION_EVENT, event_data(item.decision), config=config)
        run_id = str(run_manager.run_id)
        if item.request is None:
            yield self._small([item], [run_id])[0]
            return
        yield ShuntOutput.from_decision(item.decision)
        call = self._call(item, config)
        idle = self.stream_idle_timeout
        for value in self._shunt.ask_stream(item.request, call, run_id=run_id, idle_timeout=idle):
            yield (
                self._final(value) if isinstance(value, ShuntResult) else ShuntOutput(message=value)
            )

    async def _atransform(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[ShuntOutput]:
        last: Any = None
        async for value in inputs:
            last = value
        plan = await asyncio.to_thread(plan_batch, self._shunt, [last], self.input_key, strict=True)
        (item,) = plan.decided
        await adispatch_custom_event(DECISION_EVENT, event_data(item.decision), config=config)
        run_id = str(run_manager.run_id)
        if item.request is None:
            yield (await asyncio.to_thread(self._small, [item], [run_id]))[0]
            return
        yield ShuntOutput.from_decision(item.decision)
        call = self._call(item, config)
        idle = self.stream_idle_timeout
        stream = self._shunt.aask_stream(item.request, call, run_id=run_id, idle_timeout=idle)
        async for value in stream:
            yield (
                self._final(value) if isinstance(value, ShuntResult) else ShuntOutput(message=value)
            )

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


def _last(values: Iterator[Any]) -> Any:
    """A stream's input: inputs are not generally addable, so the last value is the input."""
    last: Any = None
    for last in values:  # noqa: B007
        pass
    return last
