"""LLM answers cached by (model, prompt) in the store's database, and replayed from a file.

A benchmark asks the same prompts again and again: the LLM-alone run and the shunt without
pruning send identical prompts, and a re-run sends all of them again. :class:`CachedLLM` wraps
any ``LLMRequest -> LLMReply`` callable and keeps each answer, its token counts and the latency
it cost, in a ``datashunt_llm_cache`` table beside the call store's records (same SQLite file
or SQLAlchemy URL). A re-run pays nothing and still reports what the answers cost when they
were bought; ``fresh=True`` asks the model again and overwrites the entries.

:class:`ReplayLLM` answers from recorded answers instead of a model: a CSV or JSONL file with an
``answer`` column and either a ``prompt`` column (matched exactly) or a ``text`` column (the
input, matched whatever the prompt around it). :meth:`LLMCache.export_jsonl` writes such a file.
"""

from __future__ import annotations

import csv
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

from .errors import ConfigError, DataError, LLMError, StoreError
from .store import CallStore, open_store
from .types import LLMReply, LLMRequest

__all__ = ["CachedAnswer", "CachedLLM", "LLMCache", "ReplayLLM", "prompt_key"]

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

_ANSWER_COLS = ("answer", "response", "output", "completion")


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
        :class:`ReplayLLM`; returns how many were written.

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


class ReplayLLM:
    """Answers from a recorded CSV or JSONL file instead of a model.

    Each row needs an answer (column ``answer``, ``response``, ``output`` or ``completion``) and
    a ``prompt`` (matched exactly first) or a ``text`` (the input, matched when no prompt
    matches). Optional ``prompt_tokens``, ``completion_tokens``, ``latency_s`` columns are
    reported as the answer's cost.

    Args:
        path: the recorded answers.
        model: the name answers are reported under (default ``"replay:<file name>"``).

    A request with no recorded answer raises a non-retryable :class:`LLMError` that says so;
    ``misses`` counts them.
    """

    def __init__(self, path: str | Path, model: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(f"replay file {self.path} does not exist")
        self.model = model or f"replay:{self.path.name}"
        self.by_prompt: dict[str, CachedAnswer] = {}
        self.by_text: dict[str, CachedAnswer] = {}
        self.misses = 0
        self._local = threading.local()
        rows = list(_read_rows(self.path))
        for n, row in enumerate(rows, 1):
            answer = next((row[c] for c in _ANSWER_COLS if row.get(c) is not None), None)
            if answer is None:
                raise DataError(
                    f"{self.path} row {n} has no answer column (one of {', '.join(_ANSWER_COLS)})"
                )
            if not row.get("prompt") and not row.get("text"):
                raise DataError(f"{self.path} row {n} has neither a 'prompt' nor a 'text' column")
            rec = CachedAnswer(
                LLMReply(
                    text=str(answer),
                    prompt_tokens=_int_or_none(row.get("prompt_tokens")),
                    completion_tokens=_int_or_none(row.get("completion_tokens")),
                    model=self.model,
                ),
                _float_or_none(row.get("latency_s")),
            )
            if row.get("prompt"):
                self.by_prompt[str(row["prompt"])] = rec
            if row.get("text"):
                self.by_text[str(row["text"])] = rec
        if not rows:
            raise DataError(f"replay file {self.path} holds no answers")

    @property
    def last_latency_s(self) -> float | None:
        """The recorded latency of the answer this thread just got (``None`` if unrecorded)."""
        return getattr(self._local, "latency", None)

    def lookup(self, request: LLMRequest) -> CachedAnswer | None:
        """The recorded answer for ``request``, or ``None``."""
        return self.by_prompt.get(request.prompt) or self.by_text.get(request.text)

    def __call__(self, request: LLMRequest) -> LLMReply:
        rec = self.lookup(request)
        if rec is None:
            self.misses += 1
            self._local.latency = None
            raise LLMError(
                f"no recorded answer in {self.path.name} for this prompt or input "
                f"({request.text[:60]!r}...): record it, or run against a model",
                retryable=False,
            )
        self._local.latency = rec.latency_s
        return rec.reply


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as fh:
        if suffix in (".jsonl", ".ndjson"):
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {n} is not JSON: {exc}") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {n} is not a JSON object")
                yield row
        elif suffix in (".csv", ".tsv"):
            yield from csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"replay file {path} must be .jsonl, .csv or .tsv")


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None
