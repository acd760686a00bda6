"""A batch after validation, the gate pass and prompt preparation: what :meth:`Shunt.plan` makes
and :meth:`Shunt.run_plan` runs.

An adapter turns its framework's inputs into texts (and extra template variables), asks the
shunt for a plan, emits its own events from the decisions, and hands the plan back to be run:
it never restates the steps in between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InputError
from ..types import Decision, LLMRequest

__all__ = ["Item", "Plan"]


@dataclass(frozen=True)
class Item:
    """One decided input.

    Attributes:
        index: its place in the batch.
        text: the validated text (an image input as its data URL).
        decision: the gate's decision.
        request: the LLM request, or ``None`` when the gate answers alone.
        extras: the adapter's further template variables (the other keys of a dict input).
        run_id: stored with the record (an adapter's run id).
    """

    index: int
    text: str
    decision: Decision
    request: LLMRequest | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True)
class Plan:
    """Each input's :class:`Item`, or its :class:`InputError`, in input order."""

    slots: tuple[Item | InputError, ...]

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def decided(self) -> list[Item]:
        """The inputs the gate decided, in input order."""
        return [s for s in self.slots if isinstance(s, Item)]

    @property
    def small(self) -> list[Item]:
        """The inputs the gate answers alone."""
        return [it for it in self.decided if it.request is None]

    @property
    def asks(self) -> list[Item]:
        """The inputs the LLM is asked about."""
        return [it for it in self.decided if it.request is not None]

    @property
    def errors(self) -> list[InputError]:
        """The inputs refused by validation."""
        return [s for s in self.slots if isinstance(s, InputError)]

    def with_requests(self, edit: Callable[[Item, LLMRequest], LLMRequest]) -> Plan:
        """The same plan with each LLM request replaced by ``edit(item, request)`` (an adapter's
        own prompt, e.g. the selector's numbered options)."""
        return Plan(
            tuple(
                replace(s, request=edit(s, s.request))
                if isinstance(s, Item) and s.request is not None
                else s
                for s in self.slots
            )
        )
