"""The shunt's configuration and its pure steps: decide, prepare, parse, conclude.

Every path (sync, async, batch, streaming, both adapters) runs these same steps; only
:mod:`datashunt.engine.shunt` adds I/O (the gate pass off the event loop, LLM calls, retries).
Audits and the drift alarm live in :mod:`~datashunt.engine.watch`, receipts in ``receipts``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, GateError, InputError, LLMError, StoreError
from ..gates import Gate
from ..gates.base import FeatureGate
from ..images import as_input, images_of
from ..inputs import DEFAULT_MAX_CHARS, validate_text
from ..llm.retry import RetryPolicy, status_of
from ..parsing import AnswerParser, label_distribution_from_logprobs
from ..policy import ShuntPolicy
from ..prompts import DEFAULT_TEMPLATE, PROMPT_MODES, PromptMode, build_request, hard_candidates
from ..store import CallRecord, CallStore, open_store
from ..transfer import PromptTransfer, TransferResult
from ..types import Decision, LLMReply, LLMRequest, Message, ParsedAnswer, ShuntResult
from .receipts import Price, Receipt, make_receipt, price_table
from .records import call_record, describe_error
from .watch import DriftMonitor, Watch

__all__ = ["OnError", "Serving", "ShuntSteps"]

log = logging.getLogger("datashunt")

OnError = Literal["fallback", "raise"]

#: how many replaced policies a shunt remembers for inputs decided before a swap
_RECENT_POLICIES = 8


@dataclass(frozen=True)
class Serving:
    """The gate and policy a shunt decides with, replaced together (:meth:`ShuntSteps.swap`).

    Attributes:
        gate: the small model.
        policy: its policy.
        policy_version: ``policy.version`` (a content hash), computed once.
        version: the gate's registry version (:mod:`datashunt.registry`), if it came from one.
    """

    gate: Gate
    policy: ShuntPolicy
    policy_version: str
    version: str | None = None


class ShuntSteps:
    """Validated configuration plus the pure steps of a shunt (see :class:`Shunt`)."""

    def __init__(
        self,
        gate: Gate,
        policy: ShuntPolicy | None = None,
        *,
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
        audit_rate: float = 0.0,
        audit_seed: int | None = None,
        drift: DriftMonitor | bool | None = None,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
    ) -> None:
        policy = policy or ShuntPolicy(labels=tuple(gate.labels))
        _check_labels(gate, policy)
        self._serving = Serving(gate, policy, policy.version)
        self._recent: dict[str, ShuntPolicy] = {}
        self._swap_lock = threading.Lock()
        if on_llm_error not in ("fallback", "raise"):
            raise ConfigError(f"on_llm_error must be 'fallback' or 'raise', got {on_llm_error!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {prompt_mode!r}")
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
        self.parser = AnswerParser(policy.labels, synonyms)
        self.prices = price_table(prices)
        self._drift_from_policy = drift is True
        self.watch = Watch(policy, audit_rate=audit_rate, audit_seed=audit_seed, drift=drift)

    # ---- what it serves with: one gate and policy, swapped as one ----------------------------

    @property
    def serving(self) -> Serving:
        """The gate and policy the next decision uses."""
        return self._serving

    @property
    def gate(self) -> Gate:
        """The gate the next decision uses."""
        return self._serving.gate

    @property
    def policy(self) -> ShuntPolicy:
        """The policy the next decision uses."""
        return self._serving.policy

    @property
    def policy_version(self) -> str:
        """The content hash of :attr:`policy`."""
        return self._serving.policy_version

    def swap(
        self, gate: Gate, policy: ShuntPolicy | None = None, *, version: str | None = None
    ) -> Serving:
        """Serve with another gate (and its policy) from the next decision on; returns the old.

        The pair is replaced in one assignment: a decision reads it once, and the later steps
        of an input (its prompt, its receipt) use the policy that decided it, so no input sees
        half of each. Calls in flight finish with the gate that decided them. The labels must
        stay the same (answers are read against them).

        Raises:
            ConfigError: the gate's or policy's labels differ from the ones served now.
        """
        policy = policy or ShuntPolicy(labels=tuple(gate.labels))
        _check_labels(gate, policy)
        if tuple(policy.labels) != tuple(self.policy.labels):
            raise ConfigError(
                f"the new gate's labels {list(policy.labels)} differ from the served ones "
                f"{list(self.policy.labels)}: a swap keeps the label set; build a new shunt"
            )
        new = Serving(gate, policy, policy.version, version)
        with self._swap_lock:
            old = self._serving
            self._recent[old.policy_version] = old.policy
            while len(self._recent) > _RECENT_POLICIES:
                self._recent.pop(next(iter(self._recent)))
            self._serving = new
            if self._drift_from_policy:  # the alarm compares with the new calibration
                self.watch.rebase(policy)
        log.info("datashunt: now serving gate %s (policy %s)", version or "?", new.policy_version)
        return old

    def policy_of(self, decision: Decision) -> ShuntPolicy:
        """The policy that made ``decision`` (the served one when it is unknown)."""
        serving = self._serving
        if decision.policy_version in (None, serving.policy_version):
            return serving.policy
        return self._recent.get(decision.policy_version or "", serving.policy)

    # ---- decide and prepare ---------------------------------------------------------------

    def validate(self, texts: Sequence[object]) -> list[str | InputError]:
        """Each input checked once (type, emptiness, length): the text, or its error."""
        if isinstance(texts, str):
            raise InputError("expected a list of texts, got a single string: pass [text]")
        out: list[str | InputError] = []
        for i, t in enumerate(texts):
            try:  # an image (bytes, PIL, Path) travels as its data URL
                out.append(validate_text(self.as_input(t, i), index=i, max_chars=self.max_chars))
            except InputError as exc:
                out.append(exc)
        return out

    @property
    def takes_images(self) -> bool:
        """The gate classifies images (``modality = "image"``, e.g. ``HFImageGate``)."""
        return getattr(self.gate, "modality", "text") == "image"

    def as_input(self, value: object, index: int | None = None) -> object:
        """For an image gate, an image given as bytes, a PIL image or a ``Path`` as its data
        URL (the form images travel in); anything else, and every input of a text gate, as is
        (for the text checks to judge: bytes are no text)."""
        return as_input(value, index=index) if self.takes_images else value

    def decide(self, texts: Sequence[str]) -> list[Decision]:
        """One gate pass over ``texts``: a :class:`Decision` per input.

        Raises:
            InputError: for a bare string, or any empty, non-string or over-long input.
            GateError: if the gate's output has the wrong shape.
        """
        if isinstance(texts, str):
            raise InputError("decide() takes a list of texts, got a single string: pass [text]")
        batch = [
            validate_text(self.as_input(t, i), index=i, max_chars=self.max_chars)
            for i, t in enumerate(texts)
        ]
        if not batch:
            return []
        serving = self._serving  # read once: a swap meanwhile applies to the next batch
        feats = None
        if self.watch.wants_features and isinstance(serving.gate, FeatureGate):
            # the representation test: the same forward pass, never a second one
            raw, feats = serving.gate.predict_proba_and_features(batch)
        else:
            raw = serving.gate.predict_proba(batch)
        probs = np.asarray(raw, dtype=np.float64)
        k = len(serving.policy.labels)
        if probs.shape != (len(batch), k):
            raise GateError(f"gate returned shape {probs.shape}, expected {(len(batch), k)}")
        if feats is not None and np.shape(feats)[0] != len(batch):
            raise GateError(f"gate returned features of shape {np.shape(feats)} for {len(batch)}")
        decisions = [self.decision_from_probs(row, serving) for row in probs]
        self.watch.observe(decisions)
        if self.watch.wants_features:
            self.watch.observe_features(feats)
        return decisions

    def decision_from_probs(self, row: np.ndarray, serving: Serving | None = None) -> Decision:
        """The decision for one probability vector (non-finite output goes to the LLM)."""
        serving = serving or self._serving
        policy, version = serving.policy, serving.policy_version
        labels = policy.labels
        if not np.all(np.isfinite(row)) or row.sum() <= 0:
            log.warning("gate returned non-finite probabilities %s; routing to the LLM", row)
            uniform = {lab: 1.0 / len(labels) for lab in labels}
            why = "gate output not finite: asking the LLM"
            return Decision("llm", labels[0], 0.0, uniform, labels, why, version)
        probs = {lab: float(p) for lab, p in zip(labels, row, strict=True)}
        top = int(np.argmax(row))
        conf = float(row[top])
        delta = policy.threshold
        if policy.routes_small(conf):
            reason = f"confidence {conf:.3f} >= threshold {delta:.3f}"
            return Decision("small", labels[top], conf, probs, (labels[top],), reason, version)
        cands = hard_candidates(probs, policy)
        if len(cands) == 1 and policy.conformal and self.prompt_mode in ("hard", "both"):
            reason = f"the conformal label set holds {cands[0]} alone: the gate answers"
            return Decision("small", cands[0], conf, probs, cands, reason, version)
        reason = f"confidence {conf:.3f} < threshold {delta:.3f}"
        return Decision("llm", labels[top], conf, probs, cands, reason, version)

    def prepare(self, texts: Sequence[str], decisions: Sequence[Decision]) -> list[LLMRequest]:
        """LLM requests for the LLM-routed inputs (Prompt Transferring applied in one pass)."""
        todo = [(t, d) for t, d in zip(texts, decisions, strict=True) if d.route == "llm"]
        transferred: list[TransferResult | None] = [None] * len(todo)
        if self.transfer is not None and todo:
            transferred = list(self.transfer.apply([t for t, _ in todo]))
        mode, noun = self.prompt_mode, self.noun
        return [
            build_request(
                self.template, self.policy_of(d), d, mode, text, tr.text if tr else text, noun
            )
            for (text, d), tr in zip(todo, transferred, strict=True)
        ]

    def audit_request(self, text: str, decision: Decision) -> LLMRequest:
        """The audit of a gate answer: every label on offer, no hint (``audit_rate``)."""
        return build_request(
            self.template, self.policy_of(decision), decision, "none", text, text, self.noun, True
        )

    def receipt_of(self, decision: Decision, reply: LLMReply | None = None, **kw: Any) -> Receipt:
        """The :class:`Receipt` of a result (see :mod:`datashunt.engine.receipts`)."""
        policy = self.policy_of(decision)
        args = (policy, decision.policy_version or policy.version, decision, self.prices)
        return make_receipt(*args, reply=reply, drift=self.watch.drifted, **kw)

    # ---- read the answer and conclude -----------------------------------------------------

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
        results = [
            ShuntResult(d.label, "small", "small", d, receipt=self.receipt_of(d)) for d in decisions
        ]
        self.watch.emit(results)
        if self.store is None or not self.record_small or not results:
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
        if err is not None and self.on_llm_error == "raise":
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            cause = error if isinstance(error, BaseException) else None
            raise LLMError(
                f"the LLM call failed{tries}: {err}",
                status=status_of(cause) if cause is not None else None,
                attempts=attempts,
            ) from cause
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


def _check_labels(gate: Gate, policy: ShuntPolicy) -> None:
    if tuple(policy.labels) != tuple(gate.labels):
        raise ConfigError(
            f"policy labels {list(policy.labels)} differ from the gate's "
            f"{list(gate.labels)}: calibrate the policy for this gate"
        )
    # a policy pins the weights it was fitted on: labels swapped in both JSON files, or a
    # retrained gate under an old policy, would otherwise pass the label check above
    digest = getattr(gate, "weights_digest", None)
    if policy.gate_digest is not None and digest is not None and digest != policy.gate_digest:
        raise ConfigError(
            f"the policy was calibrated for gate weights {policy.gate_digest}, but this gate's "
            f"are {digest} (retrained, or its labels or policy edited): calibrate the policy "
            "for this gate (`datashunt calibrate --gate DIR ...`)"
        )
