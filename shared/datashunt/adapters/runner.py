"""An adapter that answers one input at a time: its plan and its run, sync and async."""

from __future__ import annotations

import asyncio

from ..engine import CallFor, Plan, Shunt
from ..types import ShuntResult

__all__ = ["ShuntRunner"]


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

    def run(self, plan: Plan, call: CallFor) -> ShuntResult:
        """The one input's result (the gate's answer and its audit, or the LLM call)."""
        (result,) = self.shunt.run_plan(plan, call)
        return result  # type: ignore[return-value]

    async def arun(self, plan: Plan, call: CallFor) -> ShuntResult:
        """Async :meth:`run`."""
        (result,) = await self.shunt.arun_plan(plan, call)
        return result  # type: ignore[return-value]
