"""DataShuntEventHandler: record every large-model call LlamaIndex makes into the call store.

LlamaIndex emits ``LLMChatStartEvent`` / ``LLMChatEndEvent`` (and the completion pair) around
each LLM call, and ``ExceptionEvent`` / ``SpanDropEvent`` when one fails. The handler pairs
them by span id and writes one :class:`~datashunt.CallRecord` per call, ``source="observed"``.

It skips what would be recorded twice:

* calls that datashunt made and recorded itself (DataShuntLLM, DataShuntWorkflow,
  DataShuntSelector tag their events with ``datashunt.recorded``);
* calls made *inside* another recorded call, such as the ``complete`` a ``CustomLLM`` runs
  for its ``chat``: a span handler attached beside the event handler knows the span tree.

Store writes go to one background thread: ``Dispatcher.event`` calls handlers inline, also from
``async`` code, and the event loop must not wait on the database.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.dispatcher import Dispatcher
from llama_index_instrumentation.events.span import SpanDropEvent
from pydantic import PrivateAttr

from datashunt import CallRecord, CallStore, ConfigError, StoreError
from datashunt.store import open_store

from ._replies import to_reply
from ._runner import RECORDED_TAG

__all__ = ["DataShuntEventHandler"]

log = logging.getLogger("datashunt")

#: Calls whose end never arrives (an abandoned stream) are forgotten beyond this many.
_MAX_PENDING = 10_000


@dataclass
class _Call:
    kind: str  # "chat" or "completion"
    span_id: str | None
    started: Any
    model: str | None
    llm_class: str | None
    input_text: str | None
    prompt: str
    extra: dict[str, Any] = field(default_factory=dict)


class _SpanTree(BaseSpanHandler[BaseSpan]):
    """Remembers each open span's parent, so that nested LLM calls can be recognised."""

    _parents: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntSpanTree"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._guard:
            self._parents[id_] = parent_id

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        with self._guard:
            self._parents.pop(id_, None)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        with self._guard:
            self._parents.pop(id_, None)

    def ancestors(self, span_id: str | None) -> list[str]:
        """The open ancestors of ``span_id``, nearest first."""
        out: list[str] = []
        with self._guard:
            cur = self._parents.get(span_id) if span_id else None
            while cur is not None and cur not in out:
                out.append(cur)
                cur = self._parents.get(cur)
        return out

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class DataShuntEventHandler(BaseEventHandler):
    """Record large-model calls seen through LlamaIndex instrumentation into a call store.

    Attach it with :meth:`attach` (which also adds the span handler that recognises nested
    calls) or use it as a context manager; call :meth:`flush` to wait for pending writes.
    Added with ``dispatcher.add_event_handler`` alone it still records every call, but cannot
    tell that a ``CustomLLM``'s ``chat`` and the ``complete`` it runs are one call.

    Args:
        store: a :class:`~datashunt.CallStore`, or a URL / SQLite path to open one.
        run_id: stored with every record.

    Example:
        >>> with DataShuntEventHandler("runs/calls.sqlite") as handler:  # doctest: +SKIP
        ...     query_engine.query("...")
        >>> handler.store.count()  # doctest: +SKIP
        1
    """

    _store: CallStore = PrivateAttr()
    _run_id: str | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _pending: OrderedDict[str, _Call] = PrivateAttr(default_factory=OrderedDict)
    _skipped: OrderedDict[str, None] = PrivateAttr(default_factory=OrderedDict)
    _writer: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _futures: set[Future[str | None]] = PrivateAttr(default_factory=set)
    _spans: _SpanTree = PrivateAttr(default_factory=_SpanTree)
    _dispatcher: Dispatcher | None = PrivateAttr(default=None)

    def __init__(self, store: CallStore | str | Path, *, run_id: str | None = None) -> None:
        super().__init__()
        opened = open_store(store)
        if opened is None:
            raise ConfigError("DataShuntEventHandler needs a store: a CallStore, URL or path")
        self._store = opened
        self._run_id = run_id

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntEventHandler"

    @property
    def store(self) -> CallStore:
        """The call store records go to."""
        return self._store

    # ---- registration -------------------------------------------------------------------------

    def attach(self, dispatcher: Dispatcher | None = None) -> DataShuntEventHandler:
        """Add this handler and its span handler to ``dispatcher`` (default: the root one)."""
        if self._dispatcher is not None:
            raise ConfigError("this handler is already attached: call detach() first")
        d = dispatcher or get_dispatcher()
        d.add_event_handler(self)
        d.add_span_handler(self._spans)
        self._dispatcher = d
        return self

    def detach(self) -> None:
        """Remove both handlers from the dispatcher they were attached to (idempotent)."""
        d, self._dispatcher = self._dispatcher, None
        if d is not None:
            d.event_handlers = [h for h in d.event_handlers if h is not self]
            d.span_handlers = [h for h in d.span_handlers if h is not self._spans]

    def __enter__(self) -> DataShuntEventHandler:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()
        self.flush()

    # ---- the hook -----------------------------------------------------------------------------

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Pair start and end events by span; queue one record per outermost call."""
        if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
            self._start(event)
        elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
            call = self._pop(event.span_id)
            if call is not None:
                self._write(call, event.response, None, event.timestamp)
        elif isinstance(event, ExceptionEvent | SpanDropEvent):
            call = self._pop(event.span_id)
            if call is not None:
                err = (
                    _describe(event.exception)
                    if isinstance(event, ExceptionEvent)
                    else event.err_str
                )
                self._write(call, None, err or "the LLM call failed", event.timestamp)

    def _start(self, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
        key = event.span_id or ""
        with self._lock:
            nested = key in self._pending or any(
                a in self._pending or a in self._skipped for a in self._spans.ancestors(key)
            )
            if event.tags.get(RECORDED_TAG) or nested:
                _bounded_put(self._skipped, key, None)
                return
            _bounded_put(self._pending, key, _new_call(event))

    def _pop(self, span_id: str | None) -> _Call | None:
        key = span_id or ""
        with self._lock:
            self._skipped.pop(key, None)
            return self._pending.pop(key, None)

    # ---- writing, off the caller's thread -------------------------------------------------

    def _write(self, call: _Call, response: Any, error: str | None, ended: Any) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="datashunt-handler")
            fut = self._writer.submit(self._add, call, response, error, ended)
            self._futures.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[str | None]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def _add(self, call: _Call, response: Any, error: str | None, ended: Any) -> str | None:
        try:
            reply = to_reply(response) if response is not None else None
        except TypeError as exc:
            reply, error = None, str(exc)
        try:
            latency = (ended - call.started).total_seconds()
        except (TypeError, AttributeError):
            latency = None
        record = CallRecord(
            route="llm",
            source="observed",
            run_id=self._run_id,
            model=(reply.model if reply and reply.model else None) or call.model,
            input_text=call.input_text,
            prompt=call.prompt,
            response=reply.text if reply else None,
            prompt_tokens=reply.prompt_tokens if reply else None,
            completion_tokens=reply.completion_tokens if reply else None,
            latency_s=latency,
            error=error,
            extra={
                "kind": call.kind,
                "span_id": call.span_id,
                "llm_class": call.llm_class,
                **call.extra,
            },
        )
        try:
            return self._store.add(record)
        except StoreError as exc:  # observing must never break the application
            log.warning("%s", exc)
            return None

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is written."""
        with self._lock:
            pending = list(self._futures)
        for fut in pending:
            fut.result(timeout=timeout)

    def close(self) -> None:
        """Detach, write what is queued and stop the writer thread."""
        self.detach()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)


def _bounded_put(d: OrderedDict[str, Any], key: str, value: Any) -> None:
    d[key] = value
    while len(d) > _MAX_PENDING:
        d.popitem(last=False)


def _new_call(event: LLMChatStartEvent | LLMCompletionStartEvent) -> _Call:
    md = event.model_dict or {}
    model = md.get("model") or md.get("model_name")
    model_name = model if isinstance(model, str) and model != "unknown" else None
    llm_class = md.get("class_name")
    if isinstance(event, LLMCompletionStartEvent):
        return _Call(
            "completion", event.span_id, event.timestamp, model_name, llm_class,
            event.prompt, event.prompt,
        )  # fmt: skip
    messages = event.messages
    user = [m.content for m in messages if m.role.value == "user" and m.content]
    prompt = "\n".join(f"{m.role.value}: {m.content or ''}" for m in messages)
    return _Call(
        "chat", event.span_id, event.timestamp, model_name, llm_class,
        user[-1] if user else None, prompt,
    )  # fmt: skip


def _describe(exc: BaseException) -> str:
    msg = str(exc) or repr(exc)
    name = type(exc).__name__
    return msg if msg.startswith(name) else f"{name}: {msg}"
