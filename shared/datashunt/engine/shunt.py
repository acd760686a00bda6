"""The framework-agnostic shunt: one gate pass, then the LLM only for the uncertain inputs.

:meth:`Shunt.ask` / :meth:`Shunt.aask` are the only place an LLM call is timed, retried, parsed
and recorded; every path goes through them (the batch paths here, both adapters, the benchmark,
calibration). An adapter passes a :class:`~datashunt.engine.ModelCall` that says how to call its
model; with none, the shunt's own ``llm`` / ``allm`` callables are used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, LLMError
from ..gates import Gate, load_gate
from ..policy import ShuntPolicy
from ..registry import Follower, GateRegistry, as_registry
from ..types import Decision, LLMRequest, ShuntResult
from .batch import Outcome, caught, complete, with_audit
from .calls import AsyncLLMCall, FunctionCall, LLMCall, ModelCall, Rendered
from .exchange import Exchange, aexchange, exchange
from .steps import ShuntSteps
from .streaming import astream_ask, stream_ask

__all__ = ["Shunt"]


class Shunt(ShuntSteps):
    """Route each input to the gate or the LLM, prompt the LLM with the gate's help, log it all.

    Args:
        gate: the small model.
        policy: threshold, temperature and pruning settings; default a policy over the gate's
            labels with δ = 0.9 (calibrate instead: ``datashunt calibrate``).
        llm: a sync callable ``LLMRequest -> LLMReply | str``.
        allm: an async one; ``arun`` falls back to running ``llm`` in a thread.
        prompt_mode: ``"none"``, ``"soft"``, ``"hard"`` or ``"both"`` (see
            :mod:`datashunt.prompts`).
        template: the prompt template (``str.format`` syntax over the shunt variables).
        transfer: shorten long inputs before the LLM sees them (Prompt Transferring).
        store: a :class:`CallStore`, a URL or SQLite path, or ``None``.
        record_small: also record inputs the gate answered alone (distillation uses them).
        on_llm_error: ``"fallback"`` answers with the gate's label (``source="fallback"``);
            ``"raise"`` raises :class:`LLMError`. Either way the store records the failure.
        retry: how failed LLM calls (timeouts, refused connections, 429, 5xx, empty answers)
            are retried before ``on_llm_error`` applies; default :class:`RetryPolicy` (3 attempts
            with jittered exponential backoff, honouring ``Retry-After``).
        max_concurrency: LLM calls in flight at once in batch paths.
        max_chars: longer inputs are refused with :class:`InputError`.
        synonyms: extra surface forms per label for reading the LLM's answer.
        noun: what an input is called in the soft hint ("review").
        model_name: the model recorded when the provider names none (failed calls included).
        audit_rate: the share of gate answers also put to the LLM as audits (``audit_seed``
            seeds the draw); see :mod:`datashunt.engine.watch` and ``datashunt monitor``.
        drift: ``True`` (or a :class:`~datashunt.engine.drift.DriftMonitor`) to watch the
            gate's confidences for a drift away from the calibration sample.
        prices: model -> price per million tokens ``(input, output)``, for receipts' cost.

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
        **options: Any,
    ) -> None:
        super().__init__(gate, policy, **options)
        self.llm, self.allm = llm, allm

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> Shunt:
        """Load a gate directory and the policy saved beside it (see ``datashunt calibrate``)."""
        return cls(load_gate(gate_dir), ShuntPolicy.load(gate_dir), **kwargs)

    @classmethod
    def from_registry(
        cls, registry: GateRegistry | str | Path, version: str | None = None, **kwargs: Any
    ) -> Shunt:
        """A shunt serving ``version`` of a gate registry (default its champion).

        To keep serving the champion as it changes, call :meth:`follow` on the result.
        """
        reg = as_registry(registry)
        name = version or reg.champion()
        gate, policy = reg.load(name)
        shunt = cls(gate, policy, **kwargs)
        shunt._serving = replace(shunt._serving, version=name)
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

    # ---- one LLM call: the lifecycle ---------------------------------------------------------

    def own_call(self, *, sync: bool) -> ModelCall[Any]:
        """The shunt's own ``llm`` / ``allm`` as a :class:`ModelCall`.

        Raises:
            ConfigError: no LLM is configured (or only an async one, for a sync path).
        """
        if self.llm is None and (sync or self.allm is None):
            if self.allm is not None:
                raise ConfigError(
                    "this shunt has only an async LLM (allm): use arun/arun_batch, or pass llm="
                )
            raise ConfigError("no LLM configured: pass llm= (and/or allm=) to Shunt")
        return FunctionCall(self.llm, self.allm, self.model_name)

    def ask(
        self,
        request: LLMRequest,
        call: ModelCall[Any] | None = None,
        *,
        run_id: str | None = None,
        record: bool = True,
    ) -> ShuntResult:
        """Ask the LLM about one request: render, send under the retry policy, parse, record.

        Args:
            request: from :meth:`prepare`.
            call: how to call the model (an adapter's); default the shunt's own ``llm``.
            run_id: stored with the record.
            record: write the call to the store (the benchmark turns this off).

        Raises:
            LLMError: the call failed and ``on_llm_error="raise"`` (after recording).
        """
        call = call if call is not None else self.own_call(sync=True)
        t0 = time.perf_counter()
        try:
            rendered = call.render(request)
        except Exception as exc:  # a template error is recorded, then fallback or raise
            return self._conclude(call, request, None, Exchange.failed(exc, t0), run_id, record)
        # any provider error is retried per self.retry, then recorded: fallback or raise
        done = exchange(call, rendered.payload, self.retry, t0)
        return self._conclude(call, request, rendered, done, run_id, record)

    async def aask(
        self,
        request: LLMRequest,
        call: ModelCall[Any] | None = None,
        *,
        run_id: str | None = None,
        record: bool = True,
    ) -> ShuntResult:
        """Async :meth:`ask`: the call is awaited, the store write runs in a thread."""
        call = call if call is not None else self.own_call(sync=False)
        t0 = time.perf_counter()
        try:
            rendered = await call.arender(request)
        except Exception as exc:
            failed = Exchange.failed(exc, t0)
            return await asyncio.to_thread(
                self._conclude, call, request, None, failed, run_id, record
            )
        done = await aexchange(call, rendered.payload, self.retry, t0)
        return await asyncio.to_thread(
            self._conclude, call, request, rendered, done, run_id, record
        )

    def ask_stream(
        self,
        request: LLMRequest,
        call: ModelCall[Any],
        *,
        run_id: str | None = None,
        idle_timeout: float | None = None,
    ) -> Iterator[Any]:
        """Stream one call: the model's chunks as they come, then the :class:`ShuntResult`.

        A stream is retried only while no text has reached the caller; ``idle_timeout``
        bounds the wait for each next chunk.
        """
        return stream_ask(self, request, call, run_id=run_id, idle_timeout=idle_timeout)

    def aask_stream(
        self,
        request: LLMRequest,
        call: ModelCall[Any],
        *,
        run_id: str | None = None,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`ask_stream`."""
        return astream_ask(self, request, call, run_id=run_id, idle_timeout=idle_timeout)

    def _conclude(
        self,
        call: ModelCall[Any],
        request: LLMRequest,
        rendered: Rendered[Any] | None,
        done: Exchange,
        run_id: str | None,
        record: bool,
    ) -> ShuntResult:
        return self.finish(
            request,
            done.reply,
            error=done.error,
            latency_s=done.latency_s,
            run_id=run_id,
            record=record,
            attempts=done.attempts,
            messages=rendered.messages if rendered is not None else None,
            model_name=call.model_name,
        )

    # ---- the paths: single and batch, sync and async -----------------------------------------

    def run(self, text: str) -> ShuntResult:
        """Answer one input."""
        return self.run_batch([text])[0]  # type: ignore[return-value]

    async def arun(self, text: str) -> ShuntResult:
        """Answer one input without blocking the event loop."""
        return (await self.arun_batch([text]))[0]  # type: ignore[return-value]

    def run_batch(self, texts: Sequence[str], *, return_exceptions: bool = False) -> list[Outcome]:
        """Answer a batch: one gate pass, then the LLM for the uncertain subset, in threads."""
        slots, asks, audits = self._start(texts, return_exceptions)
        if asks or audits:
            call = self.own_call(sync=True)
            workers = min(self.max_concurrency, len(asks) + len(audits))

            def one(i: int) -> Outcome:
                return caught(lambda: self.ask(asks[i], call), return_exceptions)

            def audit(i: int) -> Outcome:
                return caught(lambda: self.ask(audits[i], call), True)

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datashunt") as pool:
                checked = pool.map(audit, list(audits))
                for i, res in zip(asks, pool.map(one, list(asks)), strict=True):
                    slots[i] = res
                for i, res in zip(audits, checked, strict=True):
                    slots[i] = with_audit(slots[i], res)
            self.watch.observe_audits([slots[i] for i in audits])  # the drift alarm's audit test
        return complete(slots)

    async def arun_batch(
        self,
        texts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[Outcome]:
        """Async :meth:`run_batch`: the gate pass runs in a thread; LLM calls are concurrent."""
        slots, asks, audits = await asyncio.to_thread(self._start, texts, return_exceptions)
        call = self.own_call(sync=False) if asks or audits else None
        sem = asyncio.Semaphore(max_concurrency or self.max_concurrency)

        async def one(i: int) -> Outcome:
            async with sem:  # held through the backoff too: a throttled LLM gets fewer calls
                try:
                    return await self.aask(asks[i], call)
                except LLMError as exc:
                    if return_exceptions:
                        return exc
                    raise

        async def audit(i: int) -> Outcome:
            async with sem:
                try:
                    return await self.aask(audits[i], call)
                except LLMError as exc:
                    return exc

        done = await asyncio.gather(*(one(i) for i in asks), *(audit(i) for i in audits))
        for i, res in zip([*asks, *audits], done, strict=True):
            slots[i] = res if i not in audits else with_audit(slots[i], res)
        self.watch.observe_audits([slots[i] for i in audits])  # the drift alarm's audit test
        return complete(slots)

    def _start(
        self, texts: Sequence[str], return_exceptions: bool
    ) -> tuple[list[Outcome | None], dict[int, LLMRequest], dict[int, LLMRequest]]:
        """Validate the whole batch before any paid call, one gate pass, the small answers
        (recorded in one transaction), and the LLM requests and audits by input index."""
        checked = self.validate(texts)
        slots: list[Outcome | None] = [None] * len(checked)
        valid: list[tuple[int, str]] = []
        for i, c in enumerate(checked):
            if isinstance(c, InputError):
                if not return_exceptions:
                    raise c
                slots[i] = c
            else:
                valid.append((i, c))
        good = [t for _, t in valid]
        decisions = self.decide(good)
        requests = iter(self.prepare(good, decisions))
        asks: dict[int, LLMRequest] = {}
        small: list[tuple[int, str, Decision]] = []
        for (i, text), d in zip(valid, decisions, strict=True):
            if d.route == "llm":
                asks[i] = next(requests)
            else:
                small.append((i, text, d))
        done = self.small_results([t for _, t, _ in small], [d for _, _, d in small])
        for (i, _, _), res in zip(small, done, strict=True):
            slots[i] = res
        picked = self.watch.audited([d for _, _, d in small])
        audits = {small[j][0]: self.audit_request(small[j][1], small[j][2]) for j in picked}
        return slots, asks, audits
