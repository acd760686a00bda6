"""DataShuntEventHandler: record the LLM calls LlamaIndex makes into the call store."""

from __future__ import annotations

from pathlib import Path
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
from llama_index.core.instrumentation.span import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.dispatcher import Dispatcher
from llama_index_instrumentation.events.span import SpanDropEvent
from pydantic import PrivateAttr

from datashunt import CallStore, ConfigError
from datashunt.adapters import Message
from datashunt.store import CallRecorder

from ._runner import RECORDED_TAG, to_message, to_reply

__all__ = ["DataShuntEventHandler"]


class _SpanTree(BaseSpanHandler[SimpleSpan]):
    """Keeps each open span with its parent (in ``open_spans``), so that nested LLM calls can
    be recognised."""

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntSpanTree"

    def new_span(
        self, id_: str, *args: Any, parent_span_id: str | None = None, **kwargs: Any
    ) -> SimpleSpan:
        return SimpleSpan(id_=id_, parent_id=parent_span_id)

    def prepare_to_exit_span(self, id_: str, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return self.open_spans.get(id_)  # forgotten once exited or dropped: nothing is kept

    prepare_to_drop_span = prepare_to_exit_span

    def ancestors(self, span_id: str | None) -> list[str]:
        """The open ancestors of ``span_id``, nearest first."""
        out: list[str] = []
        with self.lock:
            span = self.open_spans.get(span_id) if span_id else None
            while span is not None and span.parent_id is not None and span.parent_id not in out:
                out.append(span.parent_id)
                span = self.open_spans.get(span.parent_id)
        return out


class DataShuntEventHandler(BaseEventHandler):
    """Record large-model calls seen through LlamaIndex instrumentation into a call store.

    One record per call (``source="observed"``, the exact messages the model received), its
    start and end events paired by span. Calls that datashunt records itself (tagged
    ``datashunt.recorded``) and calls made inside another recorded call (the ``complete`` a
    ``CustomLLM`` runs for its ``chat``) are skipped. Writes go to a background thread:
    LlamaIndex calls handlers inline, also on the event loop.

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

    _recorder: CallRecorder = PrivateAttr()
    _spans: _SpanTree = PrivateAttr(default_factory=_SpanTree)
    _dispatcher: Dispatcher | None = PrivateAttr(default=None)

    def __init__(self, store: CallStore | str | Path, *, run_id: str | None = None) -> None:
        super().__init__()
        # background: Dispatcher.event calls handlers inline, on the event loop too
        self._recorder = CallRecorder(store, source="observed", run_id=run_id, background=True)

    @classmethod
    def class_name(cls) -> str:
        return "DataShuntEventHandler"

    @property
    def store(self) -> CallStore:
        """The call store records go to."""
        return self._recorder.store

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

    def __exit__(self, *exc: object) -> None:
        self.detach()
        self.flush()

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Pair start and end events by span; record one call per outermost call."""
        key = event.span_id or ""
        rec = self._recorder
        if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
            nested = rec.tracks(key) or any(rec.tracks(a) for a in self._spans.ancestors(key))
            if event.tags.get(RECORDED_TAG) or nested:
                rec.skip(key)
            else:
                _start(rec, key, event)
        elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
            if rec.tracks(key):
                try:
                    reply = to_reply(event.response) if event.response is not None else None
                except TypeError as exc:
                    rec.fail(key, str(exc))
                else:
                    rec.end(key, reply)
        elif isinstance(event, ExceptionEvent):
            rec.fail(key, event.exception)
        elif isinstance(event, SpanDropEvent):
            rec.fail(key, event.err_str or "the LLM call failed")

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is written."""
        self._recorder.flush(timeout)

    def close(self) -> None:
        """Detach, write what is queued and stop the writer thread."""
        self.detach()
        self._recorder.close()


def _start(rec: CallRecorder, key: str, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
    md = event.model_dict or {}
    model = md.get("model") or md.get("model_name")
    if isinstance(event, LLMCompletionStartEvent):
        kind, messages = "completion", [Message("user", event.prompt)]
    else:
        kind = "chat"
        messages = [to_message(m) for m in event.messages]  # images as hash and size
    rec.start(
        key,
        messages,
        model=model if isinstance(model, str) and model != "unknown" else None,
        extra={"kind": kind, "span_id": event.span_id, "llm_class": md.get("class_name")},
    )
