"""An adapter that answers one input at a time: its plan and its run, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..engine import CallFor, ModelCall, Plan, Shunt
from ..types import ShuntResult

__all__ = ["ShuntRunner", "astream_plan", "stream_plan"]


class ShuntRunner:
    """An adapter's hold on one :class:`~datashunt.Shunt`: the plan of one text and its run
    (the engine does the rest: gate answers, audits, the LLM call).

    Args:
        shunt: the core shunt (gate, policy, options).

    Raises:
        TypeError: ``shunt`` is not a :class:`~datashunt.Shunt` (the message says how to build
            one).
    """

    def __init__(self, shunt: Shunt) -> None:
        if not isinstance(shunt, Shunt):
            raise TypeError(
                f"shunt must be a datashunt.Shunt, got {type(shunt).__name__}: build one with "
                "Shunt(gate, policy, store=...) or Shunt.from_dir(path)"
            )
        self.shunt = shunt

    def plan(self, text: str, run_id: str | None = None) -> Plan:
        """Validate, one gate pass, prepare (:meth:`Shunt.plan <datashunt.Shunt.plan>`)."""
        return self.shunt.plan([text], run_ids=[run_id])

    async def aplan(self, text: str, run_id: str | None = None) -> Plan:
        """:meth:`plan` in a thread: gate inference never runs on the event loop."""
        return await asyncio.to_thread(self.plan, text, run_id)

    def answer(self, text: str, call: CallFor) -> ShuntResult:
        """One text's result: :meth:`plan`, then :meth:`run`."""
        return self.run(self.plan(text), call)

    async def aanswer(self, text: str, call: CallFor) -> ShuntResult:
        """Async :meth:`answer`."""
        return await self.arun(await self.aplan(text), call)

    def run(self, plan: Plan, call: CallFor) -> ShuntResult:
        """The one input's result (the gate's answer and its audit, or the LLM call)."""
        (result,) = self.shunt.run_plan(plan, call)
        return result  # type: ignore[return-value]

    async def arun(self, plan: Plan, call: CallFor) -> ShuntResult:
        """Async :meth:`run`."""
        (result,) = await self.shunt.arun_plan(plan, call)
        return result  # type: ignore[return-value]


def stream_plan(
    shunt: Shunt, plan: Plan, call: ModelCall[Any], idle_timeout: float | None = None
) -> Iterator[Any]:
    """Stream a one-input plan: the gate's :class:`~datashunt.ShuntResult` when it answers
    alone (audited when an audit is drawn); else its :class:`~datashunt.Decision` first, then
    the model's chunks and last the result (:meth:`Shunt.ask_stream
    <datashunt.Shunt.ask_stream>`: retried while no text reached the caller)."""
    (item,) = plan.decided
    if item.request is None:
        yield from shunt.run_plan(plan, call)
        return
    yield item.decision
    yield from shunt.ask_stream(item.request, call, run_id=item.run_id, idle_timeout=idle_timeout)


async def astream_plan(
    shunt: Shunt, plan: Plan, call: ModelCall[Any], idle_timeout: float | None = None
) -> AsyncIterator[Any]:
    """Async :func:`stream_plan`."""
    (item,) = plan.decided
    if item.request is None:
        for result in await shunt.arun_plan(plan, call):
            yield result
        return
    yield item.decision
    async for value in shunt.aask_stream(
        item.request, call, run_id=item.run_id, idle_timeout=idle_timeout
    ):
        yield value
