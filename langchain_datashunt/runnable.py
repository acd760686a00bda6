"""``DataShuntRunnable``: the shunt as a LangChain runnable in front of any chat model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
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
from langchain_core.runnables.config import merge_configs
from pydantic import ConfigDict, Field, PrivateAttr

from datashunt import ConfigError, InputError, LLMError, Shunt, ShuntPolicy, ShuntResult, load_gate
from datashunt.engine import Item, Plan, ShuntOptions
from datashunt.prompts import DEFAULT_TEMPLATE
from datashunt.registry import Follower, GateRegistry, as_registry

from ._convert import input_text, metadata_for
from .model_call import ChatModelCall, single_attempt
from .output import ShuntOutput
from .watching import DRIFT_EVENT, RECEIPT_EVENT, AlarmInbox, event_data

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
        shunt: the core :class:`datashunt.Shunt` (gate, policy and every option: prompt mode,
            store, retry, audits, drift, prices); or build one with :meth:`from_dir`,
            :meth:`from_gate` or :meth:`from_registry`, which take the same options as keywords.
        llm: any chat model (or runnable from a prompt value to a message). An OpenAI chat
            model is called one attempt at a time (its own retries off, a timeout per attempt:
            its ``request_timeout`` or 30 s) so that the shunt's ``retry`` makes and counts
            every request; give other models ``max_retries=0`` yourself.
        prompt: a prompt template (or any runnable) over the shunt variables; default a one-turn
            classification prompt.
        input_key: the text's key when the input is a dict.
        stream_idle_timeout: seconds a stream may go without a chunk before the call counts as
            failed (and, if no text has reached the caller yet, is retried); ``None``: no limit.

    Each result's receipt is dispatched as the custom event ``"datashunt_receipt"``, a drift
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

    shunt: Shunt
    llm: Runnable[Any, BaseMessage] | BaseChatModel
    prompt: Runnable[dict[str, Any], Any] | None = None
    input_key: str = "text"
    stream_idle_timeout: float | None = None
    name: str | None = Field(default="DataShunt")

    _prompt: Runnable[dict[str, Any], Any] = PrivateAttr()
    _model: Runnable[Any, BaseMessage] = PrivateAttr()
    _alarms: AlarmInbox = PrivateAttr()
    _follower: Follower | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        _refuse_loose_options(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self._alarms = AlarmInbox(self.shunt)
        # one attempt per call, bounded: the shunt's retry policy makes (and counts) each one
        self._model = single_attempt(self.llm, self.shunt.retry)
        self._prompt = self.prompt or ChatPromptTemplate.from_messages(
            [("human", DEFAULT_TEMPLATE)]
        )

    @classmethod
    def from_gate(
        cls, gate: Any, policy: ShuntPolicy | None = None, **kwargs: Any
    ) -> DataShuntRunnable:
        """Build the :class:`Shunt` from a gate, its policy and any :class:`ShuntOptions`
        given as keywords (``prompt_mode=``, ``store=``, ``audit_rate=``, ...); the other
        keywords are the runnable's own (``llm=``, ``prompt=``, ``input_key=``, ...)."""
        options, rest = ShuntOptions.split(kwargs)
        return cls(shunt=Shunt(gate, policy, options=options), **rest)

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> DataShuntRunnable:
        """Load the gate and its saved policy from a directory (see ``datashunt calibrate``);
        keywords as :meth:`from_gate`."""
        return cls.from_gate(load_gate(gate_dir), ShuntPolicy.load(gate_dir), **kwargs)

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
        happens between decisions; ``runnable.follower.stop()`` ends it). Keywords as
        :meth:`from_gate`; on a registry with no gate yet, ``labels=[...]`` starts shadowing
        (see :meth:`datashunt.Shunt.shadow`) and ``follow=True`` takes over when
        ``datashunt bootstrap`` registers the first gate."""
        reg = as_registry(registry)
        names = ShuntOptions.names() | {"options", "labels"}
        shunt_kw = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        runnable = cls(shunt=Shunt.from_registry(reg, version, **shunt_kw), **rest)
        if follow:
            runnable._follower = runnable.shunt.follow(reg, interval=interval, pin=version)
        return runnable

    @property
    def follower(self) -> Follower | None:
        """The :class:`~datashunt.registry.Follower` of ``from_registry(follow=True)``."""
        return self._follower

    # ---- pure steps -------------------------------------------------------------------------

    def _plan(self, inputs: Sequence[Any], run_ids: Sequence[str], strict: bool) -> Plan:
        """The engine's plan of a batch: each input read as text and variables, then validated
        once and decided in one gate pass."""
        read: list[Any] = []
        extras: list[dict[str, Any]] = []
        for i, value in enumerate(inputs):
            index = i if len(inputs) > 1 else None
            try:
                text, more = input_text(
                    value, self.input_key, index, images=self.shunt.takes_images
                )
            except InputError as exc:
                text, more = exc, {}
            read.append(text)
            extras.append(more)
        return self.shunt.plan(read, extras=extras, run_ids=run_ids, strict=strict)

    def _call_config(self, item: Item, config: RunnableConfig) -> RunnableConfig:
        """The model's run config: the decision as ``datashunt_*`` metadata."""
        meta = metadata_for(item.decision, self.shunt, recorded=self.shunt.store is not None)
        return merge_configs(config, {"metadata": meta})

    def _call(self, item: Item, config: RunnableConfig) -> ChatModelCall:
        """How this input's model call is made: the prompt and model under its own config."""
        return ChatModelCall(
            self._prompt, self._model, self._call_config(item, config), item.extras
        )

    @staticmethod
    def _output(result: ShuntResult | Exception) -> ShuntOutput | Exception:
        if isinstance(result, Exception):
            return result
        return ShuntOutput.from_result(result, result.reply.raw if result.reply else None)

    def _events(
        self, out: Sequence[ShuntOutput | Exception], config: list[RunnableConfig]
    ) -> list[tuple[str, Any, RunnableConfig]]:
        """The receipt of each output and any drift alarm, as custom events to dispatch."""
        events: list[tuple[str, Any, RunnableConfig]] = [
            (RECEIPT_EVENT, o.receipt, config[i])
            for i, o in enumerate(out)
            if isinstance(o, ShuntOutput) and o.receipt is not None
        ]
        events += [(DRIFT_EVENT, alarm, config[0]) for alarm in self._alarms.take()]
        return events

    # ---- sync -------------------------------------------------------------------------------

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[ShuntOutput | Exception]:
        plan = self._plan(inputs, [str(rm.run_id) for rm in run_manager], strict)
        for item in plan.decided:
            dispatch_custom_event(
                DECISION_EVENT, event_data(item.decision), config=config[item.index]
            )
        done = self.shunt.run_plan(
            plan,
            lambda it: self._call(it, config[it.index]),
            return_exceptions=True,
            max_concurrency=config[0].get("max_concurrency"),
        )
        out = [self._output(r) for r in done]
        for name, data, cfg in self._events(out, config):
            dispatch_custom_event(name, data, config=cfg)
        return out

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

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[ShuntOutput | Exception]:
        run_ids = [str(rm.run_id) for rm in run_manager]
        plan = await asyncio.to_thread(self._plan, inputs, run_ids, strict)  # the gate pass
        for item in plan.decided:
            await adispatch_custom_event(
                DECISION_EVENT, event_data(item.decision), config=config[item.index]
            )
        done = await self.shunt.arun_plan(
            plan,
            lambda it: self._call(it, config[it.index]),
            return_exceptions=True,
            max_concurrency=config[0].get("max_concurrency"),
        )
        out = [self._output(r) for r in done]
        for name, data, cfg in self._events(out, config):
            await adispatch_custom_event(name, data, config=cfg)
        return out

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
        return ShuntOutput.from_result(value)

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[ShuntOutput]:
        plan = self._plan([_last(inputs)], [str(run_manager.run_id)], strict=True)
        (item,) = plan.decided
        dispatch_custom_event(DECISION_EVENT, event_data(item.decision), config=config)
        if item.request is None:  # the gate answers (and an audit, when one is drawn)
            (result,) = self.shunt.run_plan(plan, lambda it: self._call(it, config))
            yield ShuntOutput.from_result(result)  # type: ignore[arg-type]
            return
        yield ShuntOutput.from_decision(item.decision)
        call, idle = self._call(item, config), self.stream_idle_timeout
        stream = self.shunt.ask_stream(item.request, call, run_id=item.run_id, idle_timeout=idle)
        for value in stream:
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
        run_ids = [str(run_manager.run_id)]
        plan = await asyncio.to_thread(self._plan, [last], run_ids, True)
        (item,) = plan.decided
        await adispatch_custom_event(DECISION_EVENT, event_data(item.decision), config=config)
        if item.request is None:
            (result,) = await self.shunt.arun_plan(plan, lambda it: self._call(it, config))
            yield ShuntOutput.from_result(result)  # type: ignore[arg-type]
            return
        yield ShuntOutput.from_decision(item.decision)
        call, idle = self._call(item, config), self.stream_idle_timeout
        stream = self.shunt.aask_stream(item.request, call, run_id=item.run_id, idle_timeout=idle)
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


def _refuse_loose_options(owner: str, kwargs: dict[str, Any]) -> None:
    """Options belong to the :class:`Shunt`: a loose ``gate=`` or ``store=`` says how to pass it."""
    loose = sorted(set(kwargs) & (ShuntOptions.names() | {"gate", "policy"}))
    if loose:
        raise ConfigError(
            f"{owner} takes a built shunt: pass shunt=Shunt(gate, policy, ...) or use "
            f"{owner}.from_gate(gate, policy, ...) / from_dir(...) for the options {loose}"
        )
