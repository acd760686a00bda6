"""Callback handlers that record every chat-model call into a datashunt store.

Attach one to any chat model (``ChatOpenAI(callbacks=[handler])``) or to a run's config. The
prompt comes from ``on_chat_model_start``, the answer and logprobs from ``on_llm_end``, the
failure from ``on_llm_error``; records are keyed by run id and written once. Calls that a
:class:`DataShuntRunnable` with a store already recorded (metadata ``datashunt_recorded``) are
skipped, so nothing is recorded twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from datashunt.parsing import AnswerParser, label_distribution_from_logprobs
from datashunt.store import CallRecord, CallStore, open_store
from datashunt.types import LLMReply

from ._convert import message_to_reply

__all__ = ["AsyncDataShuntCallbackHandler", "DataShuntCallbackHandler"]


@dataclass
class _Pending:
    prompt: str
    input_text: str | None
    model: str | None
    metadata: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)


def _render(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(f"{m.type}: {m.text}" for m in messages)


def _model_name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    params = kwargs.get("invocation_params") or {}
    name = params.get("model_name") or params.get("model")
    if not name and serialized:
        sk = serialized.get("kwargs") or {}
        name = sk.get("model_name") or sk.get("model")
    return str(name) if name else None


class _RecorderMixin:
    """The pure steps both handlers share: remember the start, build the record at the end."""

    store: CallStore
    parser: AnswerParser | None

    def _setup(self, store: CallStore | str | Path, labels: Sequence[str] | None) -> None:
        opened = open_store(store)
        assert opened is not None  # noqa: S101 - a store is required
        self.store = opened
        self.parser = AnswerParser(labels) if labels else None
        self._pending: dict[UUID, _Pending] = {}
        self._lock = threading.Lock()

    def _start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        run_id: UUID,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        meta = dict(metadata or {})
        if meta.get("datashunt_recorded"):
            return  # the shunt records this call itself
        flat = messages[0] if messages else []
        humans = [m for m in flat if m.type == "human"]
        pending = _Pending(
            prompt=_render(flat),
            input_text=str(humans[-1].text) if humans else None,
            model=_model_name(serialized, kwargs),
            metadata=meta,
        )
        with self._lock:
            self._pending[run_id] = pending

    def _pop(self, run_id: UUID) -> _Pending | None:
        with self._lock:
            return self._pending.pop(run_id, None)

    def _record_end(self, p: _Pending, response: LLMResult) -> CallRecord:
        gen = (
            response.generations[0][0] if response.generations and response.generations[0] else None
        )
        if isinstance(gen, ChatGeneration):
            reply = message_to_reply(gen.message)
        else:
            reply = LLMReply(text=gen.text if gen is not None else "")
        llm_output = response.llm_output or {}
        usage = llm_output.get("token_usage") or {}
        rec = self._base(p)
        rec.response = reply.text
        rec.model = reply.model or llm_output.get("model_name") or p.model
        rec.prompt_tokens = reply.prompt_tokens or usage.get("prompt_tokens")
        rec.completion_tokens = reply.completion_tokens or usage.get("completion_tokens")
        if self.parser is not None:
            parsed = self.parser.parse(reply.text)
            rec.parsed_label, rec.parse_ok, rec.parse_reason = (
                parsed.label,
                parsed.ok,
                parsed.reason,
            )
            if parsed.ok and reply.logprobs:
                dist = label_distribution_from_logprobs(reply.logprobs, self.parser)
                if dist is not None and parsed.label is not None:
                    rec.llm_probs, rec.llm_confidence = dist, dist.get(parsed.label)
        return rec

    def _record_error(self, p: _Pending, error: BaseException) -> CallRecord:
        rec = self._base(p)
        rec.error = f"{type(error).__name__}: {error}"
        return rec

    @staticmethod
    def _base(p: _Pending) -> CallRecord:
        meta = p.metadata
        return CallRecord(
            route="llm",
            source="callback",
            model=p.model,
            input_text=p.input_text,
            prompt=p.prompt,
            gate_label=meta.get("datashunt_label"),
            gate_confidence=meta.get("datashunt_confidence"),
            candidates=meta.get("datashunt_candidates"),
            latency_s=time.perf_counter() - p.started,
        )


class DataShuntCallbackHandler(_RecorderMixin, BaseCallbackHandler):
    """Records chat-model calls into a store (sync; safe from many threads).

    Args:
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        labels: if given, answers are parsed to labels and ``C_l`` is computed from logprobs.

    Example:
        .. code-block:: python

            handler = DataShuntCallbackHandler("calls.sqlite", labels=["neg", "pos"])
            ChatOpenAI(callbacks=[handler]).invoke("...")
    """

    def __init__(self, store: CallStore | str | Path, labels: Sequence[str] | None = None) -> None:
        super().__init__()
        self._setup(store, labels)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(serialized, messages, run_id, metadata, kwargs)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        p = self._pop(run_id)
        if p is not None:
            self.store.add(self._record_end(p, response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        p = self._pop(run_id)
        if p is not None:
            self.store.add(self._record_error(p, error))


class AsyncDataShuntCallbackHandler(_RecorderMixin, AsyncCallbackHandler):
    """The async twin of :class:`DataShuntCallbackHandler`: store writes run in a worker thread,
    so the event loop never waits on the database."""

    def __init__(self, store: CallStore | str | Path, labels: Sequence[str] | None = None) -> None:
        super().__init__()
        self._setup(store, labels)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(serialized, messages, run_id, metadata, kwargs)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        p = self._pop(run_id)
        if p is not None:
            await self.store.aadd(self._record_end(p, response))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        p = self._pop(run_id)
        if p is not None:
            await self.store.aadd(self._record_error(p, error))
