"""The generative gate: a small chat model answers first; its answer stands when its sequence
confidence clears δ, else the large model is asked, under the retry policy, and recorded.

The steps (judge, keep, escalate) are shared by the sync and async paths and by the LangChain
and LlamaIndex adapters, which contribute only the lines that call their models.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..engine.calls import ModelCall
from ..engine.exchange import aexchange, exchange
from ..errors import ConfigError, LLMError, StoreError
from ..llm.retry import RetryPolicy, status_of
from ..store import CallRecord, CallStore, describe_error, open_store
from ..types import LLMReply, Message, Route, messages_text
from .confidence import SequenceConfidence, sequence_confidence
from .policy import GenerativePolicy

__all__ = ["AsyncChatFn", "ChatFn", "GenerativeResult", "GenerativeShunt", "Judgement"]

log = logging.getLogger("datashunt")

#: A chat model as the core sees it: messages in, a reply (with token logprobs) out.
ChatFn = Callable[[Sequence[Message]], "LLMReply | str"]
AsyncChatFn = Callable[[Sequence[Message]], Awaitable["LLMReply | str"]]


@dataclass(frozen=True)
class Judgement:
    """What the gate made of the small model's answer.

    Attributes:
        accept: the small answer stands.
        confidence: its measures (``None``: the model returned no logprobs, so it is not kept).
        score: the policy's measure of it, in [0, 1].
        reason: a short explanation.
    """

    accept: bool
    confidence: SequenceConfidence | None
    score: float | None
    reason: str


@dataclass(frozen=True)
class GenerativeResult:
    """The answer to one prompt.

    Attributes:
        text: the answer.
        route: ``"small"`` (the small answer stood) or ``"llm"`` (the large model was asked).
        source: who wrote ``text``: ``"small"``, ``"llm"``, or ``"fallback"`` (the large model
            failed and the small answer was returned).
        small: the small model's reply.
        judgement: the gate's judgement of it.
        reply: the large model's reply, when it was asked and answered.
        error: the large call's error, if it failed.
        attempts: large-model calls made, retries included.
        record_id: the store record, if one was written.
    """

    text: str
    route: Route
    source: Literal["small", "llm", "fallback"]
    small: LLMReply
    judgement: Judgement
    reply: LLMReply | None = None
    error: str | None = None
    attempts: int = 0
    record_id: str | None = None


class GenerativeShunt:
    """The generative gate's steps: judge a small answer, keep it or escalate (retried, recorded).

    Args:
        policy: the measure and δ (:func:`~datashunt.generative.calibrate_generative`).
        store: a :class:`CallStore`, URL or SQLite path: every escalation is recorded (the
            messages sent, the large answer, the small answer and its confidence in ``extra``).
        record_small: also record the small answers that stood.
        retry: how failed large calls are retried; default :class:`RetryPolicy`.
        on_llm_error: ``"fallback"`` returns the small answer when the large call fails;
            ``"raise"`` raises :class:`LLMError` (after recording).
        model_name: the large model, recorded when its reply names none.

    Example:
        >>> shunt = GenerativeShunt(GenerativePolicy("mean", 0.6))  # doctest: +SKIP
        >>> shunt.run("Capital of France?", small=local.chat, large=big.chat)  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: GenerativePolicy | None = None,
        *,
        store: CallStore | str | Path | None = None,
        record_small: bool = False,
        retry: RetryPolicy | None = None,
        on_llm_error: Literal["fallback", "raise"] = "fallback",
        model_name: str | None = None,
    ) -> None:
        if on_llm_error not in ("fallback", "raise"):
            raise ConfigError(f"on_llm_error must be 'fallback' or 'raise', got {on_llm_error!r}")
        self.policy = policy or GenerativePolicy()
        self.store = open_store(store)
        self.record_small = record_small
        self.retry = retry if retry is not None else RetryPolicy()
        self.on_llm_error = on_llm_error
        self.model_name = model_name

    # ---- pure steps -------------------------------------------------------------------------

    def judge(self, small: LLMReply) -> Judgement:
        """Whether the small answer stands (an empty answer or one without logprobs does not)."""
        if not small.text.strip():
            return Judgement(False, None, None, "the small model's answer is empty")
        try:
            conf = sequence_confidence(small.logprobs)
        except LLMError:
            return Judgement(False, None, None, "no token logprobs: confidence unknown")
        score = conf.score(self.policy.measure)
        delta = self.policy.threshold
        if score >= delta:
            return Judgement(
                True, conf, score, f"{self.policy.measure} {score:.3f} >= δ {delta:.3f}"
            )
        return Judgement(False, conf, score, f"{self.policy.measure} {score:.3f} < δ {delta:.3f}")

    def keep(
        self, messages: Sequence[Message], small: LLMReply, judgement: Judgement
    ) -> GenerativeResult:
        """The result of a small answer that stands (recorded under ``record_small``)."""
        result = GenerativeResult(small.text, "small", "small", small, judgement)
        if self.store is not None and self.record_small:
            rec = self._record(messages, small, judgement, None, None, None, 0, route="small")
            result = self._stored(result, rec)
        return result

    def conclude(
        self,
        messages: Sequence[Message],
        small: LLMReply,
        judgement: Judgement,
        reply: LLMReply | None,
        error: BaseException | None,
        latency_s: float,
        attempts: int,
        model_name: str | None = None,
    ) -> GenerativeResult:
        """The result of an escalation, recorded; raises under ``on_llm_error="raise"``."""
        err = describe_error(error) if error is not None else None
        if reply is not None and err is None:
            result = GenerativeResult(
                reply.text, "llm", "llm", small, judgement, reply, None, attempts
            )
        else:
            result = GenerativeResult(
                small.text, "llm", "fallback", small, judgement, reply, err, attempts
            )
        if self.store is not None:
            name = model_name or self.model_name
            rec = self._record(messages, small, judgement, reply, err, latency_s, attempts, name)
            result = self._stored(result, rec)
        if err is not None and self.on_llm_error == "raise":
            raise LLMError(
                f"the large model call failed after {attempts} attempt(s): {err}",
                status=status_of(error) if error is not None else None,
                attempts=attempts,
            ) from error
        return result

    # ---- the paths --------------------------------------------------------------------------

    def escalate(
        self,
        messages: Sequence[Message],
        small: LLMReply,
        judgement: Judgement,
        send: Callable[[], LLMReply | str],
        *,
        model_name: str | None = None,
    ) -> GenerativeResult:
        """Ask the large model (``send``) through the engine's :func:`exchange` (retried per the
        policy, timed), then record the call."""
        done = exchange(_Large(send), None, self.retry)
        args = (done.reply, done.error, done.latency_s, done.attempts, model_name)
        return self.conclude(messages, small, judgement, *args)

    async def aescalate(
        self,
        messages: Sequence[Message],
        small: LLMReply,
        judgement: Judgement,
        send: Callable[[], Awaitable[LLMReply | str]],
        *,
        model_name: str | None = None,
    ) -> GenerativeResult:
        """Async :meth:`escalate` (the store write runs in a thread)."""
        import asyncio

        done = await aexchange(_Large(asend=send), None, self.retry)
        args = (done.reply, done.error, done.latency_s, done.attempts, model_name)
        return await asyncio.to_thread(self.conclude, messages, small, judgement, *args)

    def run(
        self, prompt: str | Sequence[Message], *, small: ChatFn, large: ChatFn
    ) -> GenerativeResult:
        """Answer one prompt: the small model first, the large one when the gate says so."""
        messages = _messages(prompt)
        first = _as_reply(small(messages))
        judgement = self.judge(first)
        if judgement.accept:
            return self.keep(messages, first, judgement)
        return self.escalate(
            messages, first, judgement, lambda: large(messages), model_name=_name_of(large)
        )

    async def arun(
        self, prompt: str | Sequence[Message], *, small: AsyncChatFn, large: AsyncChatFn
    ) -> GenerativeResult:
        """Async :meth:`run`."""
        import asyncio

        messages = _messages(prompt)
        first = _as_reply(await small(messages))
        judgement = self.judge(first)
        if judgement.accept:
            return await asyncio.to_thread(self.keep, messages, first, judgement)
        return await self.aescalate(
            messages, first, judgement, lambda: large(messages), model_name=_name_of(large)
        )

    # ---- the record -------------------------------------------------------------------------

    def _record(
        self,
        messages: Sequence[Message],
        small: LLMReply,
        judgement: Judgement,
        reply: LLMReply | None,
        error: str | None,
        latency_s: float | None,
        attempts: int,
        model: str | None = None,
        *,
        route: Route = "llm",
    ) -> CallRecord:
        users = [m.text for m in messages if m.role == "user"]
        asked = route == "llm"
        extra: dict[str, object] = {
            "kind": "generative",
            "measure": self.policy.measure,
            "threshold": self.policy.threshold,
            "small_answer": small.text,
            "small_model": small.model,
            "reason": judgement.reason,
        }
        if judgement.confidence is not None:
            extra["small_confidence"] = judgement.confidence.scores()
        if asked:
            extra["attempts"] = attempts
        return CallRecord(
            route=route,
            source=("llm" if error is None and reply is not None else "fallback")
            if asked
            else "small",
            model=((reply.model if reply and reply.model else None) or model)
            if asked
            else small.model,
            input_text=users[-1] if users else None,
            gate_confidence=judgement.score,
            prompt=messages_text(messages),
            messages=[m.to_json() for m in messages],
            response=(reply.text if reply else None) if asked else small.text,
            prompt_tokens=reply.prompt_tokens if reply else None,
            completion_tokens=reply.completion_tokens if reply else None,
            latency_s=latency_s,
            error=error,
            extra=extra,
        )

    def _stored(self, result: GenerativeResult, rec: CallRecord) -> GenerativeResult:
        assert self.store is not None  # noqa: S101 - callers check
        try:
            return replace(result, record_id=self.store.add(rec))
        except StoreError as exc:
            log.warning("%s", exc)  # the answer must still reach the caller
            return result


def _messages(prompt: str | Sequence[Message]) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(prompt)


def _as_reply(value: object) -> LLMReply:
    if isinstance(value, str):
        return LLMReply(text=value)
    if not isinstance(value, LLMReply):
        raise LLMError(
            f"the chat model returned {type(value).__name__}, expected LLMReply or str",
            retryable=False,
        )
    return value


class _Large(ModelCall[None]):
    """The large model's call, already bound to its messages (the engine sends and retries)."""

    def __init__(
        self,
        send: Callable[[], LLMReply | str] | None = None,
        asend: Callable[[], Awaitable[LLMReply | str]] | None = None,
    ) -> None:
        self._send, self._asend = send, asend

    def send(self, payload: None) -> LLMReply | str:
        assert self._send is not None  # noqa: S101 - the sync path passes one
        return self._send()

    async def asend(self, payload: None) -> LLMReply | str:
        assert self._asend is not None  # noqa: S101 - the async path passes one
        return await self._asend()

    def is_empty(self, reply: LLMReply) -> bool:
        # a tool call is an answer even with no text
        return not reply.text.strip() and not getattr(reply.raw, "tool_calls", None)


def _name_of(fn: object) -> str | None:
    owner = getattr(fn, "__self__", None)  # a bound method: OpenAICompatLLM(...).chat
    name = getattr(owner, "model", None) or getattr(fn, "model", None)
    return name if isinstance(name, str) and name else None
