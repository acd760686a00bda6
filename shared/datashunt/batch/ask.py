"""Pass 2: the uncertain rows to the LLM, through the engine, cached, checkpointed.

Every call goes through :meth:`Shunt.ask` (prompt, retry policy, parsing, the store record);
the LLM callable under it is a :class:`~datashunt.llm.CachedLLM`, so each paid answer is kept
by (model, prompt) before the row is done. The rows go in chunks; a chunk's results are
written to one Parquet file, renamed into place when complete. A run killed at any point and
started again skips the written chunks and finds the answers of the unwritten one in the
cache: no paid call is made twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Shunt
from ..errors import ConfigError
from ..llm.cache import CachedLLM, LLMCache
from ..policy import ShuntPolicy
from ..prompts import hard_candidates
from ..types import Decision, LLMReply, LLMRequest, ShuntResult

__all__ = ["LabelsOnly", "RateLimit", "ask_chunks"]


class LabelsOnly:
    """The gate as pass 2 sees it: its labels (the probabilities come from pass 1)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        raise ConfigError("pass 2 reuses pass 1's probabilities: the gate is not loaded here")


class RateLimit:
    """At most ``rate`` calls started per second across threads, evenly spaced.

    The next free start time is kept under a lock and each caller sleeps until its slot: the
    spacing that a leaky bucket gives, without a dependency for ten lines.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class _Limited:
    """An LLM callable that waits for its slot before each paid attempt (retries included)."""

    def __init__(self, llm: Callable[[LLMRequest], LLMReply | str], limit: RateLimit | None):
        self.llm, self.limit = llm, limit
        self.model = getattr(llm, "model", None)

    def __call__(self, request: LLMRequest) -> LLMReply | str:
        if self.limit is not None:
            self.limit.wait()
        return self.llm(request)


def decisions_for(shunt: Shunt, probs: np.ndarray) -> list[Decision]:
    """LLM-route decisions for rows the routing chose (a row tied at δ becomes one too)."""
    out = []
    for row in probs:
        d = shunt.decision_from_probs(row)
        if d.route != "llm":
            cands = hard_candidates(d.probabilities, shunt.policy)
            reason = f"confidence {d.confidence:.3f} at δ: the budget's tie-break chose the LLM"
            d = replace(d, route="llm", candidates=cands, reason=reason)
        out.append(d)
    return out


def build_shunt(
    labels: Sequence[str],
    policy: ShuntPolicy,
    llm: Callable[[LLMRequest], LLMReply | str],
    model: str,
    store: str,
    *,
    rate: float | None,
    prompt_mode: str,
    max_concurrency: int,
) -> tuple[Shunt, CachedLLM, LLMCache]:
    """The engine for pass 2: the shunt over a :class:`CachedLLM` in the store's database."""
    cache = LLMCache(store)
    limited = _Limited(llm, RateLimit(rate) if rate else None)
    cached = CachedLLM(limited, cache, model)
    shunt = Shunt(
        LabelsOnly(labels),
        policy,
        llm=cached,
        store=cache.store,
        record_small=False,
        prompt_mode=prompt_mode,  # type: ignore[arg-type]
        max_concurrency=max_concurrency,
        model_name=model,
    )
    return shunt, cached, cache


def ask_chunks(
    shunt: Shunt,
    cache: LLMCache,
    model: str,
    rows: np.ndarray,
    texts: Sequence[str],
    probs: np.ndarray,
    parts: Path,
    chunk: int,
    write: Callable[[dict[str, Any], Path], None],
) -> int:
    """Ask the LLM about ``rows`` (input positions), ``chunk`` at a time; returns how many
    chunks were already written by an earlier run."""
    parts.mkdir(parents=True, exist_ok=True)
    resumed = 0
    with ThreadPoolExecutor(shunt.max_concurrency, thread_name_prefix="datashunt-batch") as pool:
        for c, start in enumerate(range(0, len(rows), chunk)):
            path = parts / f"part-{c:06d}.parquet"
            if path.is_file():
                resumed += 1
                continue
            sl = slice(start, start + chunk)
            batch_texts = list(texts[sl])
            decisions = decisions_for(shunt, probs[sl])
            requests = shunt.prepare(batch_texts, decisions)

            def one(req: LLMRequest) -> ShuntResult:
                # an answer a killed run already paid for is not recorded a second time
                fresh = cache.get(model, req.prompt) is None
                return shunt.ask(req, record=fresh)

            # identical prompts in one chunk: the first is asked, the others find its answer
            # in the cache (asked concurrently, each would be paid for)
            first: dict[str, int] = {}
            for j, q in enumerate(requests):
                first.setdefault(q.prompt, j)
            unique = list(first.values())
            done = dict(zip(unique, pool.map(one, [requests[j] for j in unique]), strict=True))
            results = [done[j] if j in done else one(q) for j, q in enumerate(requests)]
            write(
                {
                    "_row": rows[sl],
                    "label": [r.label for r in results],
                    "source": [r.source for r in results],
                    "candidates": [list(q.candidates) for q in requests],
                    "llm_answer": [r.reply.text if r.reply is not None else None for r in results],
                    "error": [r.error for r in results],
                },
                path,
            )
    return resumed


def atomic_name(path: Path) -> Path:
    """A temporary name beside ``path`` that this process alone writes."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
