"""Reading the LLM's answer and concluding: the result, its receipt and its record.

:class:`Concluding` adds to :class:`~datashunt.engine.steps.ShuntSteps` the steps after a call
(or after the gate answered alone): parse the reply, build the :class:`ShuntResult`, write the
store record, and apply ``on_llm_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..errors import StoreError
from ..images import images_of
from ..parsing import label_distribution_from_logprobs
from ..prompts import build_request
from ..store import CallRecord
from ..types import Decision, LLMReply, LLMRequest, Message, ParsedAnswer, ShuntResult
from .exchange import call_failed
from .receipts import Receipt, make_receipt
from .records import call_record, describe_error
from .steps import ShuntSteps

__all__ = ["Concluding"]

log = logging.getLogger("datashunt")


class Concluding(ShuntSteps):
    """The steps after the gate pass: parse, conclude, record (see :class:`Shunt`)."""

    def audit_request(self, text: str, decision: Decision) -> LLMRequest:
        """The audit of a gate answer: every label on offer, no hint (``audit_rate``)."""
        opts = self.options
        return build_request(
            opts.template, self.policy_of(decision), decision, "none", text, text, opts.noun, True
        )

    def receipt_of(self, decision: Decision, reply: LLMReply | None = None, **kw: Any) -> Receipt:
        """The :class:`Receipt` of a result (see :mod:`datashunt.engine.receipts`)."""
        policy = self.policy_of(decision)
        args = (policy, decision.policy_version or policy.version, decision, self.prices)
        return make_receipt(*args, reply=reply, drift=self.watch.drifted, **kw)

    def parse(self, reply: LLMReply, request: LLMRequest) -> ParsedAnswer:
        """Map the reply to a label among the request's candidates, with ``C_l``."""
        allowed = list(request.candidates) or list(self.policy.labels)
        parser = self.parser.with_aliases(request.aliases) if request.aliases else self.parser
        parsed = parser.parse(reply.text, allowed)
        if reply.logprobs and parsed.ok:
            dist = label_distribution_from_logprobs(reply.logprobs, parser, allowed)
            if dist is not None and parsed.label is not None:
                return ParsedAnswer(parsed.label, True, parsed.reason, dist.get(parsed.label), dist)
        return parsed

    def small_results(
        self,
        texts: Sequence[str],
        decisions: Sequence[Decision],
        run_ids: Sequence[str | None] | None = None,
    ) -> list[ShuntResult]:
        """Results for gate-answered inputs, recorded in one store transaction."""
        results = [
            ShuntResult(d.label, "small", "small", d, receipt=self.receipt_of(d)) for d in decisions
        ]
        self.watch.emit(results)
        if self.store is None or not self.options.record_small or not results:
            return results
        ids = list(run_ids) if run_ids is not None else [None] * len(results)
        recs = [
            call_record(t, d, run_id=rid) for t, d, rid in zip(texts, decisions, ids, strict=True)
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
        messages: Sequence[Message] | None = None,
        model_name: str | None = None,
    ) -> ShuntResult:
        """Turn an LLM reply (or failure) into a result and record it.

        Args:
            messages: what the model received (default: ``request.prompt`` as one user message).
            model_name: the configured model, recorded when the reply names none.

        Raises:
            LLMError: when the call failed and ``on_llm_error="raise"`` (after recording).
        """
        d = request.decision
        if isinstance(reply, str):
            reply = LLMReply(text=reply)
        if reply is not None and not isinstance(reply, LLMReply):
            error = f"LLM callable returned {type(reply).__name__}, expected LLMReply or str"
            reply = None
        err = error if error is None or isinstance(error, str) else describe_error(error)
        parsed = self.parse(reply, request) if reply is not None and err is None else None
        if parsed is not None and parsed.ok and parsed.label is not None:
            result = ShuntResult(parsed.label, "llm", "llm", d, reply, parsed, None, latency_s)
        else:
            result = ShuntResult(d.label, "llm", "fallback", d, reply, parsed, err, latency_s)
        rc = self.receipt_of(d, reply, model=model_name or self.model_name, audited=request.audit)
        result = replace(result, attempts=attempts, receipt=rc)
        self.watch.emit([result])
        if record and self.store is not None:
            asked = Message("user", request.prompt, images_of(request.text))
            sent = tuple(messages) if messages is not None else (asked,)
            rec = call_record(
                request.text,
                d,
                run_id=run_id,
                request=request,
                messages=sent,
                reply=reply,
                parsed=parsed,
                error=err,
                latency_s=latency_s,
                model=model_name or self.model_name,
                attempts=attempts,
            )
            result = self._stored(result, rec)
        if err is not None and self.options.on_llm_error == "raise":
            raise call_failed(error if error is not None else err, attempts)
        return result

    def _stored(self, result: ShuntResult, rec: CallRecord) -> ShuntResult:
        assert self.store is not None  # noqa: S101 - callers check
        try:
            rid = self.store.add(rec)
        except StoreError as exc:
            # The answer must still reach the caller: the failure is logged and marked.
            log.warning("%s", exc)
            return replace(result, extra={**result.extra, "store_error": str(exc)})
        return replace(result, record_id=rid)
