"""One recorder of LLM calls observed from outside: a framework's callbacks or instrumentation.

A handler sees a call start (the messages the model receives) and later end (the reply) or
fail (the error), usually on different callbacks and sometimes on different threads. The
:class:`CallRecorder` pairs them by a key (a run id, a span id), times the call, parses the
answer when labels are known, and writes one :class:`CallRecord`. The LangChain callback
handlers and the LlamaIndex event handler only translate their framework's values onto it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StoreError
from ..parsing import AnswerParser, label_distribution_from_logprobs
from ..types import LLMReply, Message, messages_text
from .records import CallRecord
from .sql import CallStore, open_store

__all__ = ["CallRecorder", "describe_error"]

log = logging.getLogger("datashunt")


def describe_error(error: BaseException | str) -> str:
    """``Type: message`` for an error (the message alone when it names its type already)."""
    if isinstance(error, str):
        return error or "the LLM call failed"
    msg = str(error) or repr(error)
    name = type(error).__name__
    return msg if msg.startswith(name) else f"{name}: {msg}"


@dataclass
class _Call:
    messages: tuple[Message, ...]
    model: str | None
    input_text: str | None
    gate: dict[str, Any]
    extra: dict[str, Any] | None
    started: float = field(default_factory=time.perf_counter)


class CallRecorder:
    """Pairs the start and the end of observed LLM calls and writes one record per call.

    Thread-safe. A store error is logged, never raised: observing must not break the
    application it observes.

    Args:
        store: a :class:`CallStore`, or a URL / SQLite path to open one.
        source: the records' ``source`` (``"callback"``, ``"observed"``).
        labels: if given, answers are parsed to labels, and ``C_l`` comes from logprobs.
        run_id: stored with every record.
        background: write from one worker thread instead of the caller's (for callbacks that
            run inline on an event loop); :meth:`flush` waits for the writes.
        max_pending: calls whose end never arrives (an abandoned stream) are forgotten beyond
            this many.

    Example:
        >>> rec = CallRecorder("runs/calls.sqlite", source="observed")  # doctest: +SKIP
        >>> rec.start("run-1", [Message("user", "great!")], model="gpt-4o-mini")  # doctest: +SKIP
        >>> rec.end("run-1", LLMReply(text="positive")).prompt  # doctest: +SKIP
        'great!'
    """

    def __init__(
        self,
        store: CallStore | str | Path,
        *,
        source: str,
        labels: Sequence[str] | None = None,
        run_id: str | None = None,
        background: bool = False,
        max_pending: int = 10_000,
    ) -> None:
        opened = open_store(store)
        if opened is None:
            raise ConfigError("a call recorder needs a store: a CallStore, URL or path")
        if max_pending < 1:
            raise ConfigError(f"max_pending must be >= 1, got {max_pending}")
        self.store = opened
        self.source, self.run_id = source, run_id
        self.parser = AnswerParser(labels) if labels else None
        self._background, self._max = background, max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[Hashable, _Call] = OrderedDict()
        self._skipped: OrderedDict[Hashable, None] = OrderedDict()
        self._writer: ThreadPoolExecutor | None = None
        self._futures: set[Future[str | None]] = set()

    # ---- the call's life ------------------------------------------------------------------

    def start(
        self,
        key: Hashable,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        input_text: str | None = None,
        gate_label: str | None = None,
        gate_confidence: float | None = None,
        candidates: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """A call begins: ``messages`` are exactly what the model receives.

        Args:
            input_text: the text classified; default: the last user message's text.
            gate_label, gate_confidence, candidates: the gate's decision, when a shunt asked.
            extra: stored in the record's ``extra``.
        """
        if input_text is None:
            users = [m.content for m in messages if m.role == "user" and m.content]
            input_text = users[-1] if users else None
        gate: dict[str, Any] = {"gate_label": gate_label, "gate_confidence": gate_confidence}
        gate["candidates"] = list(candidates) if candidates is not None else None
        call = _Call(tuple(messages), model, input_text, gate, dict(extra) if extra else None)
        with self._lock:
            self._put(self._pending, key, call)

    def skip(self, key: Hashable) -> None:
        """A call begins that is not to be recorded (datashunt records it itself).

        It still counts for :meth:`tracks`, so calls nested inside it can be recognised. A
        call already started under ``key`` stays: the first end or failure writes it.
        """
        with self._lock:
            self._put(self._skipped, key, None)

    def tracks(self, key: Hashable) -> bool:
        """Whether a call under ``key`` has started (recorded or skipped) and not ended."""
        with self._lock:
            return key in self._pending or key in self._skipped

    def end(
        self, key: Hashable, reply: LLMReply | None, *, model: str | None = None
    ) -> CallRecord | None:
        """The call answered: write its record (``None`` for a key not started or skipped).

        ``reply`` is ``None`` when the framework reported an end without an answer.

        Args:
            model: the model the provider reported outside ``reply``; the reply's wins, then
                this, then the one given at :meth:`start`.
        """
        record = self._finish(key, reply, None, model)
        if record is not None:
            self._write(record)
        return record

    def fail(self, key: Hashable, error: BaseException | str) -> CallRecord | None:
        """The call failed: write its record with the error (``Type: message``)."""
        record = self._finish(key, None, describe_error(error), None)
        if record is not None:
            self._write(record)
        return record

    async def aend(
        self, key: Hashable, reply: LLMReply | None, *, model: str | None = None
    ) -> CallRecord | None:
        """:meth:`end`, writing in a worker thread so the event loop never waits on disk."""
        record = self._finish(key, reply, None, model)
        if record is not None:
            await self._awrite(record)
        return record

    async def afail(self, key: Hashable, error: BaseException | str) -> CallRecord | None:
        """:meth:`fail`, writing in a worker thread."""
        record = self._finish(key, None, describe_error(error), None)
        if record is not None:
            await self._awrite(record)
        return record

    # ---- the record -----------------------------------------------------------------------

    def _put(self, d: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
        d[key] = value
        while len(d) > self._max:
            d.popitem(last=False)

    def _finish(
        self, key: Hashable, reply: LLMReply | None, error: str | None, model: str | None
    ) -> CallRecord | None:
        with self._lock:
            self._skipped.pop(key, None)
            call = self._pending.pop(key, None)
        if call is None:
            return None
        record = CallRecord(
            route="llm",
            source=self.source,
            run_id=self.run_id,
            model=(reply.model if reply is not None else None) or model or call.model,
            input_text=call.input_text,
            prompt=messages_text(call.messages),
            messages=[m.to_json() for m in call.messages],
            latency_s=time.perf_counter() - call.started,
            error=error,
            extra=call.extra,
            **call.gate,
        )
        if reply is not None:
            record.response = reply.text
            record.prompt_tokens, record.completion_tokens = (
                reply.prompt_tokens,
                reply.completion_tokens,
            )
            self._parse(record, reply)
        return record

    def _parse(self, record: CallRecord, reply: LLMReply) -> None:
        if self.parser is None:
            return
        parsed = self.parser.parse(reply.text)
        record.parsed_label, record.parse_ok = parsed.label, parsed.ok
        record.parse_reason = parsed.reason
        if parsed.ok and parsed.label is not None and reply.logprobs:
            dist = label_distribution_from_logprobs(reply.logprobs, self.parser)
            if dist is not None:
                record.llm_probs, record.llm_confidence = dist, dist.get(parsed.label)

    # ---- writing ----------------------------------------------------------------------------

    def _add(self, record: CallRecord) -> str | None:
        try:
            return self.store.add(record)
        except StoreError as exc:  # observing must never break the application
            log.warning("%s", exc)
            return None

    def _write(self, record: CallRecord) -> None:
        if not self._background:
            self._add(record)
            return
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="datashunt-handler")
            fut = self._writer.submit(self._add, record)
            self._futures.add(fut)
        fut.add_done_callback(self._done)

    async def _awrite(self, record: CallRecord) -> None:
        if self._background:
            self._write(record)
        else:
            await asyncio.to_thread(self._add, record)

    def _done(self, fut: Future[str | None]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is written."""
        with self._lock:
            pending = list(self._futures)
        for fut in pending:
            fut.result(timeout=timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer thread (the store stays open)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
