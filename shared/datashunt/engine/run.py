"""Running a plan: the gate's answers, the audits and the LLM calls of one batch, in input order.

:func:`run_plan` / :func:`arun_plan` are the only batch loop: the core's ``run_batch``, the
LangChain runnable, the LlamaIndex components and the middleware all hand their plan here,
with a :class:`ModelCall` (or a function giving one per item) that says how their model is
called. Audits are drawn here for every path alike (``audit_rate``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from ..errors import LLMError
from .asking import Asking as Shunt  # what a plan runs on: the shunt's steps and its LLM call
from .batch import Outcome, complete, with_audit
from .calls import ModelCall
from .plan import Item, Plan

__all__ = ["CallFor", "arun_plan", "run_plan"]

#: How an item's model call is made: one :class:`ModelCall` for all, or one per item (an
#: adapter's call carries the item's own run config or messages). ``None``: the shunt's own LLM.
CallFor = ModelCall[Any] | Callable[[Item], ModelCall[Any]] | None


def _call_for(shunt: Shunt, call: CallFor, *, sync: bool) -> Callable[[Item], ModelCall[Any]]:
    if call is None:
        own = shunt.own_call(sync=sync)
        return lambda _item: own
    if isinstance(call, ModelCall):
        return lambda _item: call
    return call


def _slots(plan: Plan, return_exceptions: bool) -> list[Outcome | None]:
    """The output list with each input error in place (raised first without
    ``return_exceptions``, before anything is answered or paid for)."""
    errors = plan.errors
    if errors and not return_exceptions:
        raise errors[0]
    return [None if isinstance(s, Item) else s for s in plan.slots]


def _audit_item(shunt: Shunt, item: Item) -> Item:
    """The item as its audit: every label on offer, no hint."""
    return replace(item, request=shunt.audit_request(item.text, item.decision), run_id=None)


def _smalls(shunt: Shunt, plan: Plan, slots: list[Outcome | None]) -> list[Item]:
    """The gate's answers into their slots (one store transaction); the items drawn for audit."""
    smalls = plan.small
    done = shunt.small_results(
        [it.text for it in smalls], [it.decision for it in smalls], [it.run_id for it in smalls]
    )
    for item, res in zip(smalls, done, strict=True):
        slots[item.index] = res
    picked = shunt.audit_draw([it.decision for it in smalls], decided=len(plan.decided))
    return [smalls[j] for j in picked]


def run_plan(
    shunt: Shunt,
    plan: Plan,
    call: CallFor = None,
    *,
    return_exceptions: bool = False,
    max_concurrency: int | None = None,
) -> list[Outcome]:
    """Answer every input of ``plan``: see :meth:`Shunt.run_plan`."""
    slots = _slots(plan, return_exceptions)
    audits = _smalls(shunt, plan, slots)
    asks = plan.asks
    if not asks and not audits:
        return complete(slots)
    call_for = _call_for(shunt, call, sync=True)

    def ask(item: Item) -> Outcome:
        assert item.request is not None  # noqa: S101 - asked items carry a request
        try:
            return shunt.ask(item.request, call_for(item), run_id=item.run_id)
        except LLMError as exc:
            return exc

    workers = min(max_concurrency or shunt.max_concurrency, len(asks) + len(audits))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datashunt") as pool:
        # each call runs in a copy of the caller's context (tracing and callback context vars)
        checked = [
            pool.submit(contextvars.copy_context().run, ask, _audit_item(shunt, it))
            for it in audits
        ]
        answered = [pool.submit(contextvars.copy_context().run, ask, it) for it in asks]
        outcomes = [f.result() for f in answered]
        checks = [f.result() for f in checked]
    return _merge(shunt, slots, asks, outcomes, audits, checks, return_exceptions)


async def arun_plan(
    shunt: Shunt,
    plan: Plan,
    call: CallFor = None,
    *,
    return_exceptions: bool = False,
    max_concurrency: int | None = None,
) -> list[Outcome]:
    """Async :func:`run_plan`: the store write in a thread, the LLM calls concurrent."""
    slots = _slots(plan, return_exceptions)
    audits = await asyncio.to_thread(_smalls, shunt, plan, slots)
    asks = plan.asks
    if not asks and not audits:
        return complete(slots)
    call_for = _call_for(shunt, call, sync=False)
    sem = asyncio.Semaphore(max_concurrency or shunt.max_concurrency)

    async def ask(item: Item) -> Outcome:
        assert item.request is not None  # noqa: S101 - asked items carry a request
        async with sem:  # held through the backoff too: a throttled LLM gets fewer calls
            try:
                return await shunt.aask(item.request, call_for(item), run_id=item.run_id)
            except LLMError as exc:
                return exc

    done = await asyncio.gather(
        *(ask(it) for it in asks), *(ask(_audit_item(shunt, it)) for it in audits)
    )
    outcomes, checks = list(done[: len(asks)]), list(done[len(asks) :])
    return _merge(shunt, slots, asks, outcomes, audits, checks, return_exceptions)


def _merge(
    shunt: Shunt,
    slots: list[Outcome | None],
    asks: Sequence[Item],
    outcomes: Sequence[Outcome],
    audits: Sequence[Item],
    checks: Sequence[Outcome],
    return_exceptions: bool,
) -> list[Outcome]:
    for item, res in zip(asks, outcomes, strict=True):
        if isinstance(res, Exception) and not return_exceptions:
            raise res
        slots[item.index] = res
    for item, check in zip(audits, checks, strict=True):
        slots[item.index] = with_audit(slots[item.index], check)
    if audits:
        shunt.watch.observe_audits([slots[it.index] for it in audits])  # the alarm's audit test
    return complete(slots)
