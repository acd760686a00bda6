"""The generative gate: a small chat model answers first; its answer stands when its sequence
confidence clears δ, else the large model is asked.

Both are model calls like any other, on the engine's lifecycle: sent, timed and retried by
:func:`~datashunt.engine.exchange.exchange` (the streamed escalation by
:func:`~datashunt.engine.streaming.stream_exchange`), recorded by
:func:`~datashunt.engine.records.exchange_record`, failures included. The adapters contribute
only a :class:`~datashunt.engine.calls.ModelCall` per model: the lines that call their models.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..engine.calls import ModelCall
from ..engine.exchange import Exchange, aexchange, call_failed, exchange
from ..engine.records import exchange_record
from ..engine.streaming import StreamedExchange, astream_exchange, stream_exchange
from ..errors import ConfigError, LLMError, StoreError
from ..llm.retry import RetryPolicy
from ..store import CallRecord, CallStore, describe_error, open_store
from ..types import LLMReply, Message, Route
from .confidence import SequenceConfidence, sequence_confidence
from .policy import GenerativePolicy

__all__ = ["AsyncChatFn", "ChatFn", "GenerativeResult", "GenerativeShunt", "Judgement"]

log = logging.getLogger("datashunt")
P = TypeVar("P")

#: A chat model as the core sees it: messages in, a reply (with token logprobs) out.
ChatFn = Callable[[Sequence[Message]], "LLMReply | str"]
AsyncChatFn = Callable[[Sequence[Message]], Awaitable["LLMReply | str"]]


@dataclass(frozen=True)
class Judgement:
    """What the gate made of the small model's answer.

    Attributes:
        accept: the small answer stands.
        confidence: its measures (``None``: no logprobs, or no answer, so it is not kept).
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
        small: the small model's reply (``None``: its call failed, see ``small_error``).
        judgement: the gate's judgement of it.
        reply: the large model's reply, when it was asked and answered.
        error: the large call's error, if it failed.
        attempts: large-model calls made, retries included.
        record_id: the store record, if one was written.
        small_error: the small call's error, if it failed (the large model was asked).
    """

    text: str
    route: Route
    source: Literal["small", "llm", "fallback"]
    small: LLMReply | None
    judgement: Judgement
    reply: LLMReply | None = None
    error: str | None = None
    attempts: int = 0
    record_id: str | None = None
    small_error: str | None = None


class GenerativeShunt:
    """The generative gate's steps: ask the small model, judge, keep it or ask the large one.

    Args:
        policy: the measure and δ (:func:`~datashunt.generative.calibrate_generative`).
        store: a :class:`CallStore`, URL or SQLite path: every escalation is recorded (the
            messages sent, the large answer, the small answer and its confidence in ``extra``).
        record_small: also record the small answers that stood.
        retry: how failed calls (small and large) are retried; default :class:`RetryPolicy`.
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

    def judge(self, small: LLMReply | None, error: BaseException | None = None) -> Judgement:
        """Whether the small answer stands (a failed call, an empty answer or one without
        logprobs does not)."""
        if small is None:
            why = describe_error(error) if error is not None else "no answer"
            return Judgement(False, None, None, f"the small model failed: {why}")
        if not small.text.strip():
            return Judgement(False, None, None, "the small model's answer is empty")
        try:
            conf = sequence_confidence(small.logprobs)
        except LLMError:
            return Judgement(False, None, None, "no token logprobs: confidence unknown")
        score = conf.score(self.policy.measure)
        delta = self.policy.threshold
        sign = ">=" if score >= delta else "<"
        reason = f"{self.policy.measure} {score:.3f} {sign} δ {delta:.3f}"
        return Judgement(score >= delta, conf, score, reason)

    def keep(
        self, messages: Sequence[Message], first: Exchange, judgement: Judgement
    ) -> GenerativeResult:
        """The result of a small answer that stands (recorded under ``record_small``)."""
        small = first.reply
        assert small is not None  # noqa: S101 - only an answer is judged worth keeping
        result = GenerativeResult(small.text, "small", "small", small, judgement)
        if self.store is not None and self.record_small:
            about = self._about(messages, first, judgement)
            timed: dict[str, Any] = {"latency_s": first.latency_s, "attempts": first.attempts}
            rec = exchange_record(messages, small, route="small", source="small", **timed, **about)
            result = self._stored(result, rec)
        return result

    def conclude(
        self,
        messages: Sequence[Message],
        first: Exchange,
        judgement: Judgement,
        done: Exchange,
        model_name: str | None = None,
    ) -> GenerativeResult:
        """The result of an escalation, recorded.

        Raises:
            LLMError: the large call failed and ``on_llm_error="raise"``, or there is no small
                answer to fall back on, or a stream failed after its text reached the caller.
        """
        small, err = first.reply, describe_error(done.error) if done.error else None
        small_err = describe_error(first.error) if first.error else None
        args = (small, judgement, done.reply, err, done.attempts, None, small_err)
        if done.reply is not None and err is None:
            result = GenerativeResult(done.reply.text, "llm", "llm", *args)
        else:
            result = GenerativeResult(small.text if small else "", "llm", "fallback", *args)
        if self.store is not None:
            about = self._about(messages, first, judgement)
            call: dict[str, Any] = {"latency_s": done.latency_s, "attempts": done.attempts}
            call.update(error=err, model=model_name or self.model_name, source=result.source)
            rec = exchange_record(messages, done.reply, route="llm", **call, **about)
            result = self._stored(result, rec)
        # no fallback without a small answer, nor after a stream's text reached the caller
        sent = isinstance(done, StreamedExchange) and done.sent
        if done.error is not None and (self.on_llm_error == "raise" or small is None or sent):
            raise call_failed(done.error, done.attempts, "the large model call")
        return result

    # ---- the paths: sync and async differ only in the awaited calls -------------------------

    def ask(
        self, messages: Sequence[Message], payload: P, small: ModelCall[P], large: ModelCall[P]
    ) -> GenerativeResult:
        """Answer one prompt: ``payload`` to the small model, then to the large one when the
        gate says so. ``messages`` are what both receive, as the store records them."""
        first = exchange(_Judged(small), payload, self.retry)
        judgement = self.judge(first.reply, first.error)
        if judgement.accept:
            return self.keep(messages, first, judgement)
        done = exchange(large, payload, self.retry)
        return self.conclude(messages, first, judgement, done, large.model_name)

    async def aask(
        self, messages: Sequence[Message], payload: P, small: ModelCall[P], large: ModelCall[P]
    ) -> GenerativeResult:
        """Async :meth:`ask` (the store write runs in a thread)."""
        first = await aexchange(_Judged(small), payload, self.retry)
        judgement = self.judge(first.reply, first.error)
        if judgement.accept:
            return await asyncio.to_thread(self.keep, messages, first, judgement)
        done = await aexchange(large, payload, self.retry)
        args = (messages, first, judgement, done, large.model_name)
        return await asyncio.to_thread(self.conclude, *args)

    def stream(
        self,
        messages: Sequence[Message],
        payload: P,
        small: ModelCall[P],
        large: ModelCall[P],
        *,
        idle_timeout: float | None = None,
    ) -> Iterator[Any]:
        """:meth:`ask`, with the large model's answer streamed: its chunks as they come (when
        it is asked), then the :class:`GenerativeResult`. The small answer is judged whole
        (its confidence needs every token). A stream is retried only while no text reached
        the caller; a failure after that is raised (after recording)."""
        first = exchange(_Judged(small), payload, self.retry)
        judgement = self.judge(first.reply, first.error)
        if judgement.accept:
            yield self.keep(messages, first, judgement)
            return
        for item in stream_exchange(large, payload, self.retry, idle_timeout=idle_timeout):
            if isinstance(item, StreamedExchange):
                yield self.conclude(messages, first, judgement, item, large.model_name)
            else:
                yield item

    async def astream(
        self,
        messages: Sequence[Message],
        payload: P,
        small: ModelCall[P],
        large: ModelCall[P],
        *,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        first = await aexchange(_Judged(small), payload, self.retry)
        judgement = self.judge(first.reply, first.error)
        if judgement.accept:
            yield await asyncio.to_thread(self.keep, messages, first, judgement)
            return
        streamed = astream_exchange(large, payload, self.retry, idle_timeout=idle_timeout)
        async for item in streamed:
            if isinstance(item, StreamedExchange):
                args = (messages, first, judgement, item, large.model_name)
                yield await asyncio.to_thread(self.conclude, *args)
            else:
                yield item

    def run(
        self, prompt: str | Sequence[Message], *, small: ChatFn, large: ChatFn
    ) -> GenerativeResult:
        """:meth:`ask` for plain callables (messages in, an :class:`LLMReply` or text out)."""
        messages = _messages(prompt)
        return self.ask(messages, messages, _Chat(small), _Chat(large))

    async def arun(
        self, prompt: str | Sequence[Message], *, small: AsyncChatFn, large: AsyncChatFn
    ) -> GenerativeResult:
        """Async :meth:`run`."""
        messages = _messages(prompt)
        return await self.aask(messages, messages, _Chat(asend=small), _Chat(asend=large))

    # ---- the record -------------------------------------------------------------------------

    def _about(
        self, messages: Sequence[Message], first: Exchange, judgement: Judgement
    ) -> dict[str, Any]:
        """What every generative record holds beside the call: the small answer and why."""
        small = first.reply
        extra: dict[str, object] = {
            "kind": "generative",
            "measure": self.policy.measure,
            "threshold": self.policy.threshold,
            "small_answer": small.text if small else None,
            "small_model": small.model if small else None,
            "reason": judgement.reason,
        }
        if judgement.confidence is not None:
            extra["small_confidence"] = judgement.confidence.scores()
        extra.update(small_latency_s=first.latency_s, small_attempts=first.attempts)
        if first.error is not None:
            extra["small_error"] = describe_error(first.error)
        users = [m.text for m in messages if m.role == "user"]
        text = users[-1] if users else None
        return {"input_text": text, "gate_confidence": judgement.score, "extra": extra}

    def _stored(self, result: GenerativeResult, rec: CallRecord) -> GenerativeResult:
        assert self.store is not None  # noqa: S101 - callers check
        try:
            return replace(result, record_id=self.store.add(rec))
        except StoreError as exc:
            log.warning("%s", exc)  # the answer must still reach the caller
            return result


def _messages(prompt: str | Sequence[Message]) -> tuple[Message, ...]:
    return (Message("user", prompt),) if isinstance(prompt, str) else tuple(prompt)


class _Judged(ModelCall[Any]):
    """The small model's call as the gate needs it: an empty answer is an answer to judge (it
    goes to the large model at once), not a dropped reply to retry."""

    def __init__(self, call: ModelCall[Any]) -> None:
        self.call, self.model_name = call, call.model_name
        self.send, self.asend = call.send, call.asend  # type: ignore[method-assign]

    def is_empty(self, reply: LLMReply) -> bool:
        return False


class _Chat(ModelCall[Sequence[Message]]):
    """A plain chat callable (messages in, a reply out) as a model call."""

    def __init__(self, send: ChatFn | None = None, asend: AsyncChatFn | None = None) -> None:
        self._send, self._asend = send, asend
        self.model_name = _name_of(send or asend)

    def send(self, payload: Sequence[Message]) -> LLMReply | str:
        assert self._send is not None  # noqa: S101 - the sync path passes one
        return self._send(payload)

    async def asend(self, payload: Sequence[Message]) -> LLMReply | str:
        assert self._asend is not None  # noqa: S101 - the async path passes one
        return await self._asend(payload)


def _name_of(fn: object) -> str | None:
    owner = getattr(fn, "__self__", None)  # a bound method: OpenAICompatLLM(...).chat
    name = getattr(owner, "model", None) or getattr(fn, "model", None)
    return name if isinstance(name, str) and name else None
