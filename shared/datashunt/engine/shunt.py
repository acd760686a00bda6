"""The framework-agnostic shunt: one gate pass, then the LLM only for the uncertain inputs.

:meth:`Shunt.ask` / :meth:`Shunt.aask` are the only place an LLM call is timed, retried, parsed
and recorded; every path goes through them (the batch paths here, both adapters, the benchmark,
calibration). An adapter passes a :class:`~datashunt.engine.ModelCall` that says how to call its
model; with none, the shunt's own ``llm`` / ``allm`` callables are used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..gates import Gate, load_gate
from ..inputs import validate_text
from ..policy import ShuntPolicy
from ..registry import Follower, GateRegistry, as_registry
from ..types import ShuntResult
from .asking import Asking
from .batch import Outcome
from .calls import AsyncLLMCall, LLMCall
from .options import ShuntOptions
from .plan import Item, Plan
from .run import CallFor, arun_plan, run_plan
from .shadow import SHADOW_VERSION, Exploration, ShadowGate, shadow_policy

__all__ = ["Shunt"]


class Shunt(Asking):
    """Route each input to the gate or the LLM, prompt the LLM with the gate's help, log it all.

    Args:
        gate: the small model.
        policy: threshold, temperature and pruning settings; default a policy over the gate's
            labels with δ = 0.9 (calibrate instead: ``datashunt calibrate``).
        llm: a sync callable ``LLMRequest -> LLMReply | str``.
        allm: an async one; ``arun`` falls back to running ``llm`` in a thread.
        options: every other setting (prompt mode, store, retry, concurrency, audits,
            exploration, drift, prices, ...) as one :class:`ShuntOptions` value, where each is
            documented; any of its fields may also be given as a keyword, merged over it.

    Raises:
        ConfigError: an unknown option, or labels that differ between gate and policy.

    Example:
        >>> shunt = Shunt.from_dir("runs/gate", llm=my_llm, prompt_mode="soft")  # doctest: +SKIP
        >>> shunt.run("Great blender, works fine.").label  # doctest: +SKIP
        'positive'
    """

    def __init__(
        self,
        gate: Gate,
        policy: ShuntPolicy | None = None,
        *,
        llm: LLMCall | None = None,
        allm: AsyncLLMCall | None = None,
        options: ShuntOptions | None = None,
        **loose: Any,
    ) -> None:
        opts, unknown = ShuntOptions.split({**loose, "options": options})
        if unknown:
            raise ConfigError(
                f"unknown Shunt options {sorted(unknown)}; the options are "
                f"{sorted(ShuntOptions.names())}"
            )
        super().__init__(gate, policy, opts)
        self.llm, self.allm = llm, allm

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> Shunt:
        """Load a gate directory and the policy saved beside it (see ``datashunt calibrate``)."""
        return cls(load_gate(gate_dir), ShuntPolicy.load(gate_dir), **kwargs)

    @classmethod
    def from_registry(
        cls,
        registry: GateRegistry | str | Path,
        version: str | None = None,
        *,
        labels: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Shunt:
        """A shunt serving ``version`` of a gate registry (default its champion); on a
        registry with no champion yet, a shadowing shunt over ``labels`` (:meth:`shadow`).

        To keep serving the champion as it changes, call :meth:`follow` on the result: a
        shadowing shunt takes over when ``datashunt bootstrap`` registers its first gate.

        Raises:
            ConfigError: the registry has no champion and no ``labels`` were given.
        """
        reg = as_registry(registry)
        name = version or reg.champion()
        if name is None:
            if labels is None:
                raise ConfigError(
                    f"the registry {reg} has no gate yet: pass labels=[...] to start shadowing "
                    "(every input to the LLM, recorded for `datashunt bootstrap`)"
                )
            return cls.shadow(labels, **kwargs)
        gate, policy = reg.load(name)
        if labels is not None and tuple(labels) != tuple(policy.labels):
            raise ConfigError(
                f"labels {list(labels)} differ from the registry's {list(policy.labels)}"
            )
        shunt = cls(gate, policy, **kwargs)
        shunt._serving = replace(shunt._serving, version=name)
        return shunt

    @classmethod
    def shadow(cls, labels: Sequence[str], **kwargs: Any) -> Shunt:
        """A shunt with no gate yet: every input goes to the LLM as the user's chain would
        send it (every label on offer, no hint) and each answer is recorded with its parsed
        label, for ``datashunt bootstrap`` to learn the first gate from. Keywords as the
        constructor's. Unless given: once a gate takes over, a decaying share of its answers
        (15 % falling to 3 %, ``explore``) is also put to the LLM, to keep learning and to
        measure fidelity; and a drift alarm's audit test sends the shunt back to shadowing
        (``on_drift="shadow"``).

        Example:
            >>> shunt = Shunt.shadow(["negative", "positive"], llm=lambda r: "positive")
            >>> shunt.run("Great blender.").source, shunt.shadowing
            ('llm', True)
        """
        defaults: dict[str, Any] = {
            "audit_rate": 0.05,
            "explore": Exploration(),
            "on_drift": "shadow",
        }
        options = kwargs.pop("options", None)
        if options is None:
            kwargs = {**defaults, **kwargs}
        shunt = cls(ShadowGate(labels), shadow_policy(labels), options=options, **kwargs)
        shunt._serving = replace(shunt._serving, version=SHADOW_VERSION)
        return shunt

    def follow(
        self,
        registry: GateRegistry | str | Path,
        *,
        interval: float = 5.0,
        pin: str | None = None,
        start: bool = True,
    ) -> Follower:
        """Serve the registry's champion (or ``pin``) from now on; swaps happen between
        decisions (see :meth:`swap`). Checks once now, then every ``interval`` seconds in a
        daemon thread unless ``start=False``; ``.stop()`` the returned :class:`Follower`."""
        follower = Follower(self, registry, interval=interval, pin=pin)
        follower.check()
        return follower.start() if start else follower

    # ---- the whole request: plan, then run the plan -----------------------------------------

    def plan(
        self,
        inputs: Sequence[object],
        *,
        extras: Sequence[Mapping[str, Any]] | None = None,
        run_ids: Sequence[str | None] | None = None,
        strict: bool = True,
        indexed: bool | None = None,
    ) -> Plan:
        """Validate each input once, make one gate pass over the valid ones, prepare the LLM
        requests: every path's first step.

        Args:
            inputs: texts (an image gate also takes bytes, PIL images and paths); an
                :class:`InputError` in place of an input (an adapter that could not read one)
                stays in its slot.
            extras: an adapter's further template variables per input.
            run_ids: stored with each input's record.
            strict: raise the first input error before anything is decided or paid for.
            indexed: name inputs by index in errors (default: when there are several).

        Raises:
            InputError: for a bare string, or (``strict``) the first invalid input.
            GateError: if the gate's output has the wrong shape.
        """
        if isinstance(inputs, str | bytes):
            raise InputError("expected a list of inputs, got a single string: pass [text]")
        named = len(inputs) > 1 if indexed is None else indexed
        checked: list[str | InputError] = []
        for i, value in enumerate(inputs):
            at = i if named else None
            try:
                if isinstance(value, InputError):
                    raise value
                checked.append(
                    validate_text(self.as_input(value, at), index=at, max_chars=self.max_chars)
                )
            except InputError as exc:
                if strict:
                    raise
                checked.append(exc)
        valid = [(i, t) for i, t in enumerate(checked) if isinstance(t, str)]
        texts = [t for _, t in valid]
        decisions = self.gate_pass(texts)
        requests = iter(self.prepare(texts, decisions))
        slots: list[Item | InputError | None] = [
            c if isinstance(c, InputError) else None for c in checked
        ]
        for (i, text), d in zip(valid, decisions, strict=True):
            slots[i] = Item(
                i,
                text,
                d,
                next(requests) if d.route == "llm" else None,
                dict(extras[i]) if extras is not None else {},
                run_ids[i] if run_ids is not None else None,
            )
        return Plan(tuple(s for s in slots if s is not None))

    def run_plan(
        self,
        plan: Plan,
        call: CallFor = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Outcome]:
        """Answer a plan: the gate's answers (recorded in one transaction), the audits drawn
        among them, and the LLM calls through :meth:`ask`, at most ``max_concurrency`` (default
        the shunt's) at a time; results in input order.

        Args:
            plan: from :meth:`plan`.
            call: how the model is called (a :class:`ModelCall`, or a function giving one per
                :class:`Item`); default the shunt's own ``llm``.
            return_exceptions: input errors and failed calls (``on_llm_error="raise"``) in
                place of their results, instead of raised.

        Raises:
            InputError: an input error in the plan, without ``return_exceptions``.
            LLMError: a failed call with ``on_llm_error="raise"``, without ``return_exceptions``.
        """
        return run_plan(
            self, plan, call, return_exceptions=return_exceptions, max_concurrency=max_concurrency
        )

    async def arun_plan(
        self,
        plan: Plan,
        call: CallFor = None,
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Outcome]:
        """Async :meth:`run_plan` (the calls concurrent; nothing blocks the event loop)."""
        return await arun_plan(
            self, plan, call, return_exceptions=return_exceptions, max_concurrency=max_concurrency
        )

    # ---- the core's own paths: single and batch, sync and async ------------------------------

    def run(self, text: str) -> ShuntResult:
        """Answer one input."""
        return self.run_batch([text])[0]  # type: ignore[return-value]

    async def arun(self, text: str) -> ShuntResult:
        """Answer one input without blocking the event loop."""
        return (await self.arun_batch([text]))[0]  # type: ignore[return-value]

    def run_batch(self, texts: Sequence[str], *, return_exceptions: bool = False) -> list[Outcome]:
        """Answer a batch: one gate pass, then the LLM for the uncertain subset, in threads."""
        plan = self.plan(texts, strict=not return_exceptions, indexed=True)
        return self.run_plan(plan, return_exceptions=return_exceptions)

    async def arun_batch(
        self,
        texts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Outcome]:
        """Async :meth:`run_batch`: the gate pass runs in a thread; LLM calls are concurrent."""
        plan = await asyncio.to_thread(self.plan, texts, strict=not return_exceptions, indexed=True)
        return await self.arun_plan(
            plan, return_exceptions=return_exceptions, max_concurrency=max_concurrency
        )
