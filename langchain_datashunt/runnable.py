"""``DataShuntRunnable``: the shunt as a LangChain runnable in front of any chat model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

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

from datashunt import Decision, Shunt, ShuntPolicy, ShuntResult, load_gate
from datashunt.adapters import (
    astream_plan,
    decision_event,
    decision_metadata,
    drift_event,
    read_inputs,
    refuse_loose,
    stream_plan,
)
from datashunt.engine import DriftAlarm, Item, Plan, ShuntOptions
from datashunt.prompts import DEFAULT_TEMPLATE
from datashunt.registry import Follower, GateRegistry, as_registry

from ._convert import input_text
from .model_call import ChatModelCall, single_attempt
from .output import ShuntOutput

__all__ = ["DECISION_EVENT", "DRIFT_EVENT", "RECEIPT_EVENT", "DataShuntRunnable"]

#: Custom event with each input's decision (route, label, confidence, candidates...).
DECISION_EVENT = "datashunt_decision"
#: Custom event with each result's receipt (policy version, δ, guarantee, p_wrong, tokens, cost).
RECEIPT_EVENT = "datashunt_receipt"
#: Custom event dispatched once when the drift alarm fires.
DRIFT_EVENT = "datashunt_drift"

In = TypeVar("In")
Out = TypeVar("Out")


class ShuntRunnable(RunnableSerializable[In, Out]):
    """A runnable over a :class:`Shunt`, which holds every option (:meth:`from_gate` builds
    it): ``invoke`` and ``batch`` over one ``_batch`` / ``_abatch``; without
    ``return_exceptions`` (and in ``invoke``), one bad input fails the whole batch before any
    paid call (``strict``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    shunt: Shunt
    #: The options :meth:`from_gate` gives the shunt unless told otherwise.
    shunt_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        # options belong to the Shunt: a loose gate= or store= says how to pass it
        owner = type(self).__name__
        how = f"pass shunt=Shunt(gate, policy, ...) or use {owner}.from_gate(gate, policy, ...)"
        refuse_loose(owner, kwargs, ShuntOptions.names() | {"gate", "policy"}, how)
        super().__init__(**kwargs)

    @classmethod
    def from_gate(cls, gate: Any, policy: ShuntPolicy | None = None, **kwargs: Any) -> Self:
        """Build the :class:`Shunt` from a gate, its policy and any :class:`ShuntOptions`
        given as keywords (``prompt_mode=``, ``store=``, ``audit_rate=``, ...; unless given,
        :attr:`shunt_defaults`); the other keywords are the runnable's own (``llm=``,
        ``prompt=``, ``input_key=``, ``destinations=``, ...)."""
        options, rest = ShuntOptions.split({**cls.shunt_defaults, **kwargs})
        return cls(shunt=Shunt(gate, policy, options=options), **rest)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Out:
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Out:
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Out]:
        return self._batch_with_config(
            self._batch,
            inputs,
            config,
            return_exceptions=return_exceptions,
            strict=not return_exceptions,
            **kwargs,
        )

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Out]:
        return await self._abatch_with_config(
            self._abatch,
            inputs,
            config,
            return_exceptions=return_exceptions,
            strict=not return_exceptions,
            **kwargs,
        )

    if TYPE_CHECKING:  # each subclass's (inputs, run managers, configs, strict) -> outputs

        def _batch(self, *args: Any, **kwargs: Any) -> list[Out | Exception]: ...

        async def _abatch(self, *args: Any, **kwargs: Any) -> list[Out | Exception]: ...


class DataShuntRunnable(ShuntRunnable[Any, ShuntOutput]):
    """A confidence gate in front of a chat model, as an LCEL runnable.

    Confident inputs are answered by the gate with no model call. The rest go to ``llm`` with
    the gate's soft hint and/or hard-pruned candidates filled into ``prompt``'s variables
    (``text``, ``labels``, ``candidates``, ``hint``, ``small_label``, ``small_confidence``, plus any
    other keys of a dict input). ``batch``/``abatch`` run one gate pass for the whole batch and
    call the model only for the uncertain subset, at most ``max_concurrency`` at a time.

    Each input's decision is dispatched as the custom event ``"datashunt_decision"`` and set as
    ``datashunt_*`` metadata on the model's child run; each result's receipt as
    ``"datashunt_receipt"``, a drift alarm as ``"datashunt_drift"``.

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

    llm: Runnable[Any, BaseMessage] | BaseChatModel
    prompt: Runnable[dict[str, Any], Any] | None = None
    input_key: str = "text"
    stream_idle_timeout: float | None = None
    name: str | None = Field(default="DataShunt")

    _prompt: Runnable[dict[str, Any], Any] = PrivateAttr()
    _model: Runnable[Any, BaseMessage] = PrivateAttr()
    _alarms: list[DriftAlarm] = PrivateAttr(default_factory=list)
    _follower: Follower | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shunt.watch.listeners.append(self._alarms.append)  # dispatched as events
        # one attempt per call, bounded: the shunt's retry policy makes (and counts) each one
        self._model = single_attempt(self.llm, self.shunt.retry)
        self._prompt = self.prompt or ChatPromptTemplate.from_messages(
            [("human", DEFAULT_TEMPLATE)]
        )

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> Self:
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
    ) -> Self:
        """Serve ``version`` of a gate registry (default its champion); with ``follow=True``
        keep serving the champion as ``datashunt loop`` promotes or rolls back (the swap
        happens between decisions; ``runnable.follower.stop()`` ends it). Keywords as
        :meth:`from_gate`; on a registry with no gate yet, ``labels=[...]`` starts shadowing
        (see :meth:`datashunt.Shunt.shadow`) and ``follow=True`` takes over when
        ``datashunt bootstrap`` registers the first gate."""
        reg = as_registry(registry)
        names = ShuntOptions.names() | {"options", "labels"}
        shunt_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        runnable = cls(shunt=Shunt.from_registry(reg, version, **shunt_kw), **kwargs)
        if follow:
            runnable._follower = runnable.shunt.follow(reg, interval=interval, pin=version)
        return runnable

    @property
    def follower(self) -> Follower | None:
        """The :class:`~datashunt.registry.Follower` of ``from_registry(follow=True)``."""
        return self._follower

    def _plan(self, inputs: Sequence[Any], run_ids: Sequence[str], strict: bool) -> Plan:
        """The engine's plan of a batch: each input read as text and variables, then validated
        once and decided in one gate pass."""
        key, images = self.input_key, self.shunt.takes_images
        read, extras = read_inputs(inputs, lambda v, i: input_text(v, key, i, images=images))
        return self.shunt.plan(read, extras=extras, run_ids=run_ids, strict=strict)

    def _call(self, item: Item, config: RunnableConfig) -> ChatModelCall:
        """How this input's model call is made: the prompt and model under its own config, the
        decision in its ``datashunt_*`` metadata."""
        meta = decision_metadata(item.decision, self.shunt, recorded=self.shunt.store is not None)
        config = merge_configs(config, {"metadata": meta})
        return ChatModelCall(self._prompt, self._model, config, item.extras)

    def _events(
        self, results: Sequence[ShuntResult | Exception], config: list[RunnableConfig]
    ) -> tuple[list[ShuntOutput | Exception], list[tuple[str, Any, RunnableConfig]]]:
        """The outputs, and the custom events they raise: each receipt, any drift alarm."""
        out = [r if isinstance(r, Exception) else _output(r) for r in results]
        events = [
            (RECEIPT_EVENT, o.receipt, config[i])
            for i, o in enumerate(out)
            if isinstance(o, ShuntOutput) and o.receipt is not None
        ]
        shunt, alarms = self.shunt, self._alarms[:]
        del self._alarms[: len(alarms)]
        for alarm in alarms:
            data = drift_event(alarm, shunt.serving.version, shunt.shadowing)
            events.append((DRIFT_EVENT, data, config[0]))
        return out, events

    # ---- batch: the engine runs the plan, this adds the events ------------------------------

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[ShuntOutput | Exception]:
        plan = self._plan(inputs, [str(rm.run_id) for rm in run_manager], strict)
        for item in plan.decided:
            data = decision_event(item.decision)
            dispatch_custom_event(DECISION_EVENT, data, config=config[item.index])
        done = self.shunt.run_plan(
            plan,
            lambda it: self._call(it, config[it.index]),
            return_exceptions=True,
            max_concurrency=config[0].get("max_concurrency"),
        )
        out, events = self._events(done, config)
        for name, data, cfg in events:
            dispatch_custom_event(name, data, config=cfg)
        return out

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
            data = decision_event(item.decision)
            await adispatch_custom_event(DECISION_EVENT, data, config=config[item.index])
        done = await self.shunt.arun_plan(
            plan,
            lambda it: self._call(it, config[it.index]),
            return_exceptions=True,
            max_concurrency=config[0].get("max_concurrency"),
        )
        out, events = self._events(done, config)
        for name, data, cfg in events:
            await adispatch_custom_event(name, data, config=cfg)
        return out

    # ---- streaming: the model's tokens flow through on the LLM route ----------------------------

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[ShuntOutput]:
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[ShuntOutput]:
        async def once() -> AsyncIterator[Any]:
            yield input

        streamed = self._atransform_stream_with_config(once(), self._astream, config, **kwargs)
        async for chunk in streamed:
            yield chunk

    def _stream(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[ShuntOutput]:
        plan = self._plan(list(inputs), [str(run_manager.run_id)], strict=True)
        (item,) = plan.decided
        dispatch_custom_event(DECISION_EVENT, decision_event(item.decision), config=config)
        call = self._call(item, config)
        for value in stream_plan(self.shunt, plan, call, self.stream_idle_timeout):
            yield _streamed(value)

    async def _astream(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[ShuntOutput]:
        values, run_ids = [v async for v in inputs], [str(run_manager.run_id)]
        plan = await asyncio.to_thread(self._plan, values, run_ids, True)
        (item,) = plan.decided
        await adispatch_custom_event(DECISION_EVENT, decision_event(item.decision), config=config)
        call = self._call(item, config)
        async for value in astream_plan(self.shunt, plan, call, self.stream_idle_timeout):
            yield _streamed(value)


def _output(result: ShuntResult) -> ShuntOutput:
    return ShuntOutput.from_result(result, result.reply.raw if result.reply else None)


def _streamed(value: Any) -> ShuntOutput:
    """An item of a plan's stream: the decision, a message chunk, or last the result, without
    the message the chunks already carried (adding the chunks up restores it)."""
    if isinstance(value, ShuntResult):
        return ShuntOutput.from_result(value)
    if isinstance(value, Decision):
        return ShuntOutput.from_decision(value)
    return ShuntOutput(message=value)
