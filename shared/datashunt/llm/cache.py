"""LLM answers cached by (model, prompt) in the store's database.

A benchmark asks the same prompts again and again: the LLM-alone run and the shunt without
pruning send identical prompts, and a re-run sends all of them again. :class:`CachedLLM` wraps
any ``LLMRequest -> LLMReply`` callable and keeps each answer, its token counts and the latency
it cost, in a ``datashunt_llm_cache`` table beside the call store's records (same SQLite file
or SQLAlchemy URL). A re-run pays nothing and still reports what the answers cost when they
were bought; ``fresh=True`` asks the model again and overwrites the entries.
:meth:`LLMCache.export_jsonl` writes the entries as a file that
:class:`~datashunt.llm.replay.ReplayLLM` answers from.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError, StoreError
from ..store import CallStore, open_store
from ..types import LLMReply, LLMRequest

__all__ = ["CachedAnswer", "CachedLLM", "LLMCache", "cache_table", "prompt_key"]

_meta = sa.MetaData()
cache_table = sa.Table(
    "datashunt_llm_cache",
    _meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt", sa.Text),
    sa.Column("input_text", sa.Text),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("logprobs", sa.JSON),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("latency_s", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def prompt_key(model: str, prompt: str) -> str:
    """The cache key: SHA-256 of the model name and the exact prompt."""
    raw = f"{model}\x00{prompt}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A cached reply and the seconds the original call took."""

    reply: LLMReply
    latency_s: float | None


class LLMCache:
    """A (model, prompt) -> answer table in the store's database.

    Args:
        store: a :class:`CallStore`, or a SQLite path / SQLAlchemy URL to open one.

    Under a store with ``store_inputs`` other than ``"full"`` prompts and inputs are not kept
    (only their hash, as the key): the cache still works, :meth:`export_jsonl` then cannot
    write a replayable file.
    """

    def __init__(self, store: CallStore | str | Path) -> None:
        opened = open_store(store)
        if opened is None:
            raise ConfigError("LLMCache needs a store (a CallStore, SQLite path or URL)")
        self.store = opened
        self._keep_text = opened.store_inputs == "full"
        self._lock = threading.Lock()
        try:
            _meta.create_all(opened.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create the LLM cache table in {opened.url}: {exc}") from exc

    def get(self, model: str, prompt: str) -> CachedAnswer | None:
        """The cached answer, or ``None``."""
        query = sa.select(cache_table).where(cache_table.c.key == prompt_key(model, prompt))
        try:
            with self.store.engine.connect() as conn:
                row = conn.execute(query).mappings().first()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the LLM cache: {exc}") from exc
        if row is None:
            return None
        reply = LLMReply(
            text=row["answer"],
            logprobs=row["logprobs"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            model=row["model"],
        )
        return CachedAnswer(reply, row["latency_s"])

    def put(
        self,
        model: str,
        prompt: str,
        reply: LLMReply,
        *,
        latency_s: float | None = None,
        input_text: str | None = None,
    ) -> None:
        """Store (or replace) the answer to ``prompt`` from ``model``."""
        row = {
            "key": prompt_key(model, prompt),
            "model": model,
            "prompt": prompt if self._keep_text else None,
            "input_text": input_text if self._keep_text else None,
            "answer": reply.text,
            "logprobs": reply.logprobs,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "latency_s": latency_s,
            "created_at": datetime.now(timezone.utc),
        }
        try:
            with self._lock, self.store.engine.begin() as conn:
                conn.execute(cache_table.delete().where(cache_table.c.key == row["key"]))
                conn.execute(cache_table.insert(), [row])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the LLM cache: {exc}") from exc

    def __len__(self) -> int:
        with self.store.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(cache_table)).scalar()
        return int(n or 0)

    def rows(self, model: str | None = None) -> Iterator[dict[str, Any]]:
        """Every cached entry (optionally of one model) as a dict, oldest first."""
        query = sa.select(cache_table).order_by(cache_table.c.created_at)
        if model is not None:
            query = query.where(cache_table.c.model == model)
        with self.store.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                yield dict(row)

    def export_jsonl(self, path: str | Path, model: str | None = None) -> int:
        """Write the entries as JSONL (``model, prompt, text, answer, ...``), replayable by
        :class:`~datashunt.llm.replay.ReplayLLM`; returns how many were written.

        Raises:
            StoreError: if the store kept no prompts (``store_inputs`` other than ``"full"``).
        """
        if not self._keep_text:
            raise StoreError(
                "this store keeps no prompts (store_inputs != 'full'): nothing replayable to export"
            )
        out = Path(path)
        n = 0
        with out.open("w", encoding="utf-8") as fh:
            for row in self.rows(model):
                fh.write(
                    json.dumps(
                        {
                            "model": row["model"],
                            "prompt": row["prompt"],
                            "text": row["input_text"],
                            "answer": row["answer"],
                            "prompt_tokens": row["prompt_tokens"],
                            "completion_tokens": row["completion_tokens"],
                            "latency_s": row["latency_s"],
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                n += 1
        return n


class CachedLLM:
    """An LLM callable that answers from :class:`LLMCache` when it can.

    Args:
        llm: the callable to ask on a miss (``LLMRequest -> LLMReply | str``).
        cache: where answers are kept.
        model: the model name in the cache key (the same prompt to another model is a miss).
        fresh: ask the model even on a hit, and overwrite the entry.

    Counters: ``hits``, ``misses``, and ``last_latency_s`` (the seconds the answer just returned
    cost: measured on a miss, the recorded figure on a hit).
    """

    def __init__(self, llm: Any, cache: LLMCache, model: str, *, fresh: bool = False) -> None:
        if not model:
            raise ConfigError("CachedLLM needs a model name: it is part of the cache key")
        self.llm = llm
        self.cache = cache
        self.model = model
        self.fresh = fresh
        self.hits = 0
        self.misses = 0
        self._local = threading.local()
        self._count_lock = threading.Lock()

    @property
    def last_latency_s(self) -> float | None:
        """What the answer this thread just got cost, in seconds."""
        return getattr(self._local, "latency", None)

    def __call__(self, request: LLMRequest) -> LLMReply:
        if not self.fresh:
            hit = self.cache.get(self.model, request.prompt)
            if hit is not None:
                with self._count_lock:
                    self.hits += 1
                self._local.latency = hit.latency_s
                return hit.reply
        t0 = time.perf_counter()
        reply: LLMReply | str = self.llm(request)
        latency = time.perf_counter() - t0
        if isinstance(reply, str):
            reply = LLMReply(text=reply)
        with self._count_lock:
            self.misses += 1
        self._local.latency = latency
        if reply.text.strip():  # an empty answer is retried, never cached
            self.cache.put(
                self.model, request.prompt, reply, latency_s=latency, input_text=request.text
            )
        return reply
