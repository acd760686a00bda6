"""The framework-agnostic shunt: one gate pass, then the LLM only for the uncertain inputs.

Adapters (LangChain, LlamaIndex) wrap :class:`Shunt`; they reuse its pure steps
(:meth:`Shunt.decide`, :meth:`Shunt.prepare`, :meth:`Shunt.finish`) and add only their own way
of calling a model, so sync, async, batch and streaming share every decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, DataShuntError, GateError, InputError, LLMError, StoreError
from .gates import Gate, load_gate
from .inputs import DEFAULT_MAX_CHARS, validate_text
from .parsing import AnswerParser, label_distribution_from_logprobs
from .policy import ShuntPolicy
from .prompts import (
    DEFAULT_TEMPLATE,
    PROMPT_MODES,
    PromptMode,
    hard_candidates,
    prompt_variables,
    render_prompt,
)
from .retry import RetryPolicy, empty_answer_error, status_of
from .store import CallRecord, CallStore, open_store
from .transfer import PromptTransfer, TransferResult
from .types import Decision, LLMReply, LLMRequest, ParsedAnswer, ShuntResult

__all__ = ["AsyncLLMCall", "LLMCall", "Shunt"]

log = logging.getLogger("datashunt")

LLMCall = Callable[[LLMRequest], "LLMReply | str"]
AsyncLLMCall = Callable[[LLMRequest], Awaitable["LLMReply | str"]]
OnError = Literal["fallback", "raise"]


class Shunt:
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
        prompt_mode: PromptMode = "soft",
        template: str = DEFAULT_TEMPLATE,
        transfer: PromptTransfer | None = None,
        store: CallStore | str | Path | None = None,
        record_small: bool = True,
        on_llm_error: OnError = "fallback",
        retry: RetryPolicy | None = None,
        max_concurrency: int = 8,
        max_chars: int = DEFAULT_MAX_CHARS,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        noun: str = "text",
        model_name: str | None = None,
    ) -> None:
        self.gate = gate
        self.policy = policy or ShuntPolicy(labels=tuple(gate.labels))
        if tuple(self.policy.labels) != tuple(gate.labels):
            raise ConfigError(
                f"policy labels {list(self.policy.labels)} differ from the gate's "
                f"{list(gate.labels)}: calibrate the policy for this gate"
            )
        if on_llm_error not in ("fallback", "raise"):
            raise ConfigError(f"on_llm_error must be 'fallback' or 'raise', got {on_llm_error!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {prompt_mode!r}")
        self.llm, self.allm = llm, allm
        self.prompt_mode: PromptMode = prompt_mode
        self.template = template
        self.transfer = transfer
        self.store = open_store(store)
        self.record_small = record_small
        self.on_llm_error: OnError = on_llm_error
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_concurrency = max_concurrency
        self.max_chars = max_chars
        self.noun = noun
        self.model_name = model_name
        self.parser = AnswerParser(self.policy.labels, synonyms)

    @classmethod
    def from_dir(cls, gate_dir: str | Path, **kwargs: Any) -> Shunt:
        """Load a gate directory and the policy saved beside it (see ``datashunt calibrate``)."""
        return cls(load_gate(gate_dir), ShuntPolicy.load(gate_dir), **kwargs)

    # ---- pure steps, shared by every path and by the adapters -------------------------------

    def decide(self, texts: Sequence[str]) -> list[Decision]:
        """One gate pass over ``texts``: a :class:`Decision` per input.

        Raises:
            InputError: for a bare string, or any empty, non-string or over-long input.
            GateError: if the gate's output has the wrong shape.
        """
        if isinstance(texts, str):
            raise InputError("decide() takes a list of texts, got a single string: pass [text]")
        batch = [validate_text(t, index=i, max_chars=self.max_chars) for i, t in enumerate(texts)]
        if not batch:
            return []
        probs = np.asarray(self.gate.predict_proba(batch), dtype=np.float64)
        k = len(self.policy.labels)
        if probs.shape != (len(batch), k):
            raise GateError(f"gate returned shape {probs.shape}, expected {(len(batch), k)}")
        return [self.decision_from_probs(row) for row in probs]

    def decision_from_probs(self, row: np.ndarray) -> Decision:
        """The decision for one probability vector (non-finite output goes to the LLM)."""
        labels = self.policy.labels
        if not np.all(np.isfinite(row)) or row.sum() <= 0:
            log.warning("gate returned non-finite probabilities %s; routing to the LLM", row)
            uniform = {lab: 1.0 / len(labels) for lab in labels}
            return Decision(
                "llm", labels[0], 0.0, uniform, labels, "gate output not finite: asking the LLM"
            )
        probs = {lab: float(p) for lab, p in zip(labels, row, strict=True)}
        top = int(np.argmax(row))
        conf = float(row[top])
        delta = self.policy.threshold
        if self.policy.routes_small(conf):
            reason = f"confidence {conf:.3f} >= threshold {delta:.3f}"
            return Decision("small", labels[top], conf, probs, (labels[top],), reason)
        cands = hard_candidates(probs, self.policy)
        reason = f"confidence {conf:.3f} < threshold {delta:.3f}"
        return Decision("llm", labels[top], conf, probs, cands, reason)

    def prepare(self, texts: Sequence[str], decisions: Sequence[Decision]) -> list[LLMRequest]:
        """LLM requests for the LLM-routed inputs (Prompt Transferring applied in one pass)."""
        todo = [(t, d) for t, d in zip(texts, decisions, strict=True) if d.route == "llm"]
        transferred: list[TransferResult | None] = [None] * len(todo)
        if self.transfer is not None and todo:
            transferred = list(self.transfer.apply([t for t, _ in todo]))
        out = []
        for (text, decision), tr in zip(todo, transferred, strict=True):
            shown = tr.text if tr is not None else text
            variables = prompt_variables(
                decision, self.policy, self.prompt_mode, shown, noun=self.noun
            )
            out.append(
                LLMRequest(text, decision, variables, render_prompt(self.template, variables))
            )
        return out

    def parse(self, reply: LLMReply, request: LLMRequest) -> ParsedAnswer:
        """Map the reply to a label among the request's allowed labels, with ``C_l``."""
        allowed = [
            c.strip() for c in request.variables.get("candidates", "").split(",") if c.strip()
        ]
        allowed = allowed or list(self.policy.labels)
        parser = self.parser.with_aliases(request.aliases) if request.aliases else self.parser
        parsed = parser.parse(reply.text, allowed)
        if reply.logprobs and parsed.ok:
            dist = label_distribution_from_logprobs(reply.logprobs, parser, allowed)
            if dist is not None and parsed.label is not None:
                return ParsedAnswer(parsed.label, True, parsed.reason, dist.get(parsed.label), dist)
        return parsed

    def small_result(
        self, text: str, decision: Decision, *, run_id: str | None = None
    ) -> ShuntResult:
        """The result for a gate-answered input (recorded if ``record_small``)."""
        return self.small_results([text], [decision], [run_id])[0]

    def small_results(
        self,
        texts: Sequence[str],
        decisions: Sequence[Decision],
        run_ids: Sequence[str | None] | None = None,
    ) -> list[ShuntResult]:
        """Results for gate-answered inputs, recorded in one store transaction."""
        results = [ShuntResult(d.label, "small", "small", d) for d in decisions]
        if self.store is None or not self.record_small or not results:
            return results
        ids = list(run_ids) if run_ids is not None else [None] * len(results)
        recs = [
            self._record(t, d, None, None, None, None, None, rid)
            for t, d, rid in zip(texts, decisions, ids, strict=True)
        ]
        try:
            self.store.add_many(recs)
        except StoreError as exc:
            log.warning("%s", exc)  # the answers must still reach the caller
            return [replace(r, extra={**r.extra, "store_error": str(exc)}) for r in results]
        return [replace(r, record_id=rec.id) for r, rec in zip(results, recs, strict=True)]

    def finish(
        self,
        request: LLMRequest,
        reply: LLMReply | str | None,
        *,
        error: BaseException | str | None = None,
        latency_s: float | None = None,
        run_id: str | None = None,
        record: bool = True,
        attempts: int = 1,
    ) -> ShuntResult:
        """Turn an LLM reply (or failure) into a result and record it.

        ``attempts`` (LLM calls made, retries included) goes into the result and the record's
        ``extra``.

        Raises:
            LLMError: when the call failed and ``on_llm_error="raise"`` (after recording).
        """
        d = request.decision
        if isinstance(reply, str):
            reply = LLMReply(text=reply)
        if reply is not None and not isinstance(reply, LLMReply):
            error = f"LLM callable returned {type(reply).__name__}, expected LLMReply or str"
            reply = None
        err = None if error is None else (error if isinstance(error, str) else _describe(error))
        parsed = self.parse(reply, request) if reply is not None and err is None else None
        if parsed is not None and parsed.ok and parsed.label is not None:
            result = ShuntResult(parsed.label, "llm", "llm", d, reply, parsed, None, latency_s)
        else:
            result = ShuntResult(d.label, "llm", "fallback", d, reply, parsed, err, latency_s)
        result = replace(result, attempts=attempts)
        if record and self.store is not None:
            rec = self._record(request.text, d, request, reply, parsed, err, latency_s, run_id)
            rec.extra = {**(rec.extra or {}), "attempts": attempts}
            result = self._stored(result, rec)
        if err is not None and self.on_llm_error == "raise":
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            cause = error if isinstance(error, BaseException) else None
            raise LLMError(
                f"the LLM call failed{tries}: {err}",
                status=status_of(cause) if cause is not None else None,
                attempts=attempts,
            ) from cause
        return result

    # ---- the paths: single and batch, sync and async -----------------------------------------

    def run(self, text: str) -> ShuntResult:
        """Answer one input."""
        return self.run_batch([text])[0]  # type: ignore[return-value]

    async def arun(self, text: str) -> ShuntResult:
        """Answer one input without blocking the event loop."""
        return (await self.arun_batch([text]))[0]  # type: ignore[return-value]

    def run_batch(
        self, texts: Sequence[str], *, return_exceptions: bool = False
    ) -> list[ShuntResult | Exception]:
        """Answer a batch: one gate pass, then the LLM for the uncertain subset, in threads."""
        valid, results, decisions, requests = self._start(texts, return_exceptions)
        by_index = self._index_requests(valid, decisions, requests)
        llm = self._require_llm(sync=True) if by_index else None

        def call(i: int) -> ShuntResult | Exception:
            req = by_index[i]
            t0 = time.perf_counter()
            # any provider error is retried per self.retry, then recorded: fallback or raise
            out = self.retry.call(_answer, llm, req)
            latency = time.perf_counter() - t0
            return self._finish_safe(
                req, out.value, out.error, latency, return_exceptions, out.attempts
            )

        if by_index:
            workers = min(self.max_concurrency, len(by_index))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datashunt") as pool:
                for i, res in zip(by_index, pool.map(call, list(by_index)), strict=True):
                    results[i] = res
        return self._complete(valid, decisions, results, texts)

    async def arun_batch(
        self,
        texts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
    ) -> list[ShuntResult | Exception]:
        """Async :meth:`run_batch`: the gate pass runs in a thread; LLM calls are concurrent."""
        valid, results, decisions, requests = await asyncio.to_thread(
            self._start, texts, return_exceptions
        )
        by_index = self._index_requests(valid, decisions, requests)
        sem = asyncio.Semaphore(max_concurrency or self.max_concurrency)
        allm = self.allm
        llm = None if allm is not None or not by_index else self._require_llm(sync=True)

        async def call(i: int) -> ShuntResult | Exception:
            req = by_index[i]
            async with sem:  # held through the backoff too: a throttled LLM gets fewer calls
                t0 = time.perf_counter()
                if allm is not None:
                    out = await self.retry.acall(_aanswer, allm, req)
                else:
                    assert llm is not None  # noqa: S101 - _require_llm checked it
                    out = await self.retry.acall(asyncio.to_thread, _answer, llm, req)
                latency = time.perf_counter() - t0
            # The store write is blocking I/O: run it in a thread.
            return await asyncio.to_thread(
                self._finish_safe,
                req,
                out.value,
                out.error,
                latency,
                return_exceptions,
                out.attempts,
            )

        done = await asyncio.gather(*(call(i) for i in by_index))
        for i, res in zip(by_index, done, strict=True):
            results[i] = res
        return await asyncio.to_thread(self._complete, valid, decisions, results, texts)

    # ---- internals -----------------------------------------------------------------------------

    def _start(
        self, texts: Sequence[str], return_exceptions: bool
    ) -> tuple[list[int], list[ShuntResult | Exception | None], list[Decision], list[LLMRequest]]:
        if isinstance(texts, str):
            raise InputError("expected a list of texts, got a single string: pass [text]")
        results: list[ShuntResult | Exception | None] = [None] * len(texts)
        valid: list[int] = []
        for i, t in enumerate(texts):
            try:
                validate_text(t, index=i, max_chars=self.max_chars)
                valid.append(i)
            except InputError as exc:
                if not return_exceptions:
                    raise
                results[i] = exc
        good = [texts[i] for i in valid]
        decisions = self.decide(good)
        requests = self.prepare(good, decisions)
        return valid, results, decisions, requests

    @staticmethod
    def _index_requests(
        valid: list[int], decisions: list[Decision], requests: list[LLMRequest]
    ) -> dict[int, LLMRequest]:
        it = iter(requests)
        return {i: next(it) for i, d in zip(valid, decisions, strict=True) if d.route == "llm"}

    def _complete(
        self,
        valid: list[int],
        decisions: list[Decision],
        results: list[ShuntResult | Exception | None],
        texts: Sequence[str],
    ) -> list[ShuntResult | Exception]:
        small = [(i, d) for i, d in zip(valid, decisions, strict=True) if d.route == "small"]
        done = self.small_results([texts[i] for i, _ in small], [d for _, d in small])
        for (i, _), res in zip(small, done, strict=True):
            results[i] = res
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a bug guard: every input must get a result or an error
            raise DataShuntError(f"internal error: no result for inputs {missing}")
        return [r for r in results if r is not None]

    def _finish_safe(
        self,
        req: LLMRequest,
        reply: LLMReply | str | None,
        err: BaseException | None,
        latency: float,
        return_exceptions: bool,
        attempts: int = 1,
    ) -> ShuntResult | Exception:
        try:
            return self.finish(req, reply, error=err, latency_s=latency, attempts=attempts)
        except LLMError as exc:
            if return_exceptions:
                return exc
            raise

    def _require_llm(self, *, sync: bool) -> LLMCall:
        if self.llm is None:
            if self.allm is not None and sync:
                raise ConfigError(
                    "this shunt has only an async LLM (allm): use arun/arun_batch, or pass llm="
                )
            raise ConfigError("no LLM configured: pass llm= (and/or allm=) to Shunt")
        return self.llm

    def _record(
        self,
        text: str,
        d: Decision,
        req: LLMRequest | None,
        reply: LLMReply | None,
        parsed: ParsedAnswer | None,
        err: str | None,
        latency: float | None,
        run_id: str | None,
    ) -> CallRecord:
        return CallRecord(
            route=d.route,
            run_id=run_id,
            source="small" if req is None else ("llm" if parsed and parsed.ok else "fallback"),
            model=(reply.model if reply and reply.model else self.model_name) if req else None,
            input_text=text,
            gate_label=d.label,
            gate_confidence=d.confidence,
            gate_probs=dict(d.probabilities),
            candidates=list(d.candidates),
            prompt=req.prompt if req else None,
            response=reply.text if reply else None,
            parsed_label=parsed.label if parsed else None,
            parse_ok=parsed.ok if parsed else None,
            parse_reason=parsed.reason if parsed else None,
            llm_confidence=parsed.confidence if parsed else None,
            llm_probs=dict(parsed.probabilities) if parsed and parsed.probabilities else None,
            prompt_tokens=reply.prompt_tokens if reply else None,
            completion_tokens=reply.completion_tokens if reply else None,
            latency_s=latency,
            error=err,
        )

    def _stored(self, result: ShuntResult, rec: CallRecord) -> ShuntResult:
        assert self.store is not None  # noqa: S101 - callers check
        try:
            rid = self.store.add(rec)
        except StoreError as exc:
            # The answer must still reach the caller: the failure is logged and marked.
            log.warning("%s", exc)
            return replace(result, extra={**result.extra, "store_error": str(exc)})
        return replace(result, record_id=rid)


def _answer(llm: LLMCall, request: LLMRequest) -> LLMReply | str:
    """One LLM call; an empty answer is an error, so that the retry policy tries again."""
    return _non_empty(llm(request))


async def _aanswer(allm: AsyncLLMCall, request: LLMRequest) -> LLMReply | str:
    return _non_empty(await allm(request))


def _non_empty(reply: LLMReply | str) -> LLMReply | str:
    text = reply if isinstance(reply, str) else getattr(reply, "text", None)
    if isinstance(text, str) and (err := empty_answer_error(text)) is not None:
        raise err
    return reply


def _describe(exc: BaseException) -> str:
    msg = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {msg}" if not msg.startswith(type(exc).__name__) else msg
