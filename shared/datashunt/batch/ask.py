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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Shunt
from ..errors import ConfigError
from ..llm.cache import CachedLLM, LLMCache
from ..llm.retry import RetryPolicy
from ..policy import ShuntPolicy
from ..prompts import hard_candidates
from ..types import Decision, LLMReply, LLMRequest, ShuntResult

__all__ = ["Asked", "Breaker", "LabelsOnly", "RateLimit", "ask_chunks"]


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
    retry: RetryPolicy | None = None,
    shadow: bool = False,
) -> tuple[Shunt, CachedLLM, LLMCache]:
    """The engine for pass 2: the shunt over a :class:`CachedLLM` in the store's database.

    With ``shadow`` (no gate yet) it is :meth:`Shunt.shadow`'s shunt: its requests are the ones
    a user's chain sends (every label on offer, no hint), whatever ``policy`` and ``prompt_mode``.
    """
    cache = LLMCache(store)
    limited = _Limited(llm, RateLimit(rate) if rate else None)
    cached = CachedLLM(limited, cache, model)
    options: dict[str, Any] = {
        "llm": cached,
        "store": cache.store,
        "record_small": False,
        "max_concurrency": max_concurrency,
        "model_name": model,
        "retry": retry,
    }
    if shadow:
        return Shunt.shadow(labels, **options), cached, cache
    shunt = Shunt(LabelsOnly(labels), policy, prompt_mode=prompt_mode, **options)
    return shunt, cached, cache


class Breaker:
    """Stops asking once ``limit`` calls in a row have failed (after their retries).

    A dead or misconfigured endpoint fails every call: without this a job would spend each
    row's retries on it (minutes for thousands of rows) and write nothing. One answer in
    between resets the count, so a flaky endpoint is not mistaken for a dead one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failed_in_a_row = 0
        self.last_error: str | None = None
        self.tripped = False
        self._lock = threading.Lock()

    def record(self, error: str | None) -> None:
        with self._lock:
            if error is None:
                self.failed_in_a_row = 0
                return
            self.failed_in_a_row += 1
            self.last_error = error
            if self.failed_in_a_row >= self.limit:
                self.tripped = True

    @property
    def reason(self) -> str:
        return f"{self.limit} LLM calls failed in a row (the last: {self.last_error})"


@dataclass
class Asked:
    """What pass 2 did this run.

    Attributes:
        resumed: chunks an earlier run had finished (no failed row in them).
        reasked: rows that had failed in an earlier run and were asked again.
        failed: rows whose LLM call failed (or was not made) in the written checkpoints.
    """

    resumed: int = 0
    reasked: int = 0
    failed: int = 0


def ask_chunks(
    shunt: Shunt,
    cache: LLMCache,
    model: str,
    rows: np.ndarray,
    texts: Sequence[str],
    probs: np.ndarray,
    parts: Path,
    chunk: int,
    io: tuple[Callable[[dict[str, Any], Path], None], Callable[[Path], dict[str, list[Any]]]],
    breaker: Breaker,
) -> Asked:
    """Ask the LLM about ``rows`` (input positions), ``chunk`` at a time.

    A chunk's checkpoint holds every row, the failed ones with their ``error``: a finished
    chunk without failures is skipped by a later run, one with failures has exactly those rows
    asked again. Once ``breaker`` trips, no further call is made: the rows left are written as
    failed ("not asked"), so that the output is complete and a rerun asks them.
    """
    write, read = io
    parts.mkdir(parents=True, exist_ok=True)
    asked = Asked()
    with ThreadPoolExecutor(shunt.max_concurrency, thread_name_prefix="datashunt-batch") as pool:
        for c, start in enumerate(range(0, len(rows), chunk)):
            path = parts / f"part-{c:06d}.parquet"
            sl = slice(start, start + chunk)
            old = read(path) if path.is_file() else None
            todo = range(len(rows[sl])) if old is None else _failed(old)
            if old is not None and not todo:
                asked.resumed += 1
                continue
            if old is not None:
                asked.reasked += len(todo)
            decisions = decisions_for(shunt, probs[sl])
            requests = shunt.prepare(list(texts[sl]), decisions)
            fresh = _ask(shunt, cache, model, [requests[j] for j in todo], pool, breaker)
            cols = old or _columns(rows[sl])
            for j, r in zip(todo, fresh, strict=True):
                for name, value in _row(requests[j], r, breaker, shunt.shadowing).items():
                    cols[name][j] = value
            asked.failed += len(_failed(cols))
            write(cols, path)
    return asked


def _failed(cols: dict[str, list[Any]]) -> list[int]:
    """The rows to ask again: an error and no answer (a shadow job's unreadable answer has an
    error that says so, but the LLM did answer: asking again would get the same answer)."""
    return [
        j
        for j, (e, a) in enumerate(zip(cols["error"], cols["llm_answer"], strict=True))
        if e is not None and a is None
    ]


def _ask(
    shunt: Shunt,
    cache: LLMCache,
    model: str,
    requests: list[LLMRequest],
    pool: ThreadPoolExecutor,
    breaker: Breaker,
) -> list[ShuntResult | None]:
    """The results of ``requests`` (``None``: not asked, the breaker had tripped)."""

    def one(req: LLMRequest) -> ShuntResult | None:
        if breaker.tripped:
            return None
        # an answer a killed run already paid for is not recorded a second time
        fresh = cache.get(model, req.prompt) is None
        result = shunt.ask(req, record=fresh)
        breaker.record(result.error)
        return result

    # identical prompts in one chunk: the first is asked, the others find its answer in the
    # cache (asked concurrently, each would be paid for)
    first: dict[str, int] = {}
    for j, q in enumerate(requests):
        first.setdefault(q.prompt, j)
    unique = list(first.values())
    done = dict(zip(unique, pool.map(one, [requests[j] for j in unique]), strict=True))
    return [done[j] if j in done else one(q) for j, q in enumerate(requests)]


def _columns(rows: np.ndarray) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {"_row": [int(r) for r in rows]}
    for name in ("label", "source", "candidates", "llm_answer", "error"):
        cols[name] = [None] * len(rows)
    return cols


def _row(
    req: LLMRequest, result: ShuntResult | None, breaker: Breaker, shadow: bool
) -> dict[str, Any]:
    """One output row of pass 2; a call not made (or not read) falls back to the gate's label,
    and to no label in a shadow job (there is no gate; its ``error`` says why)."""
    if result is None:
        return {
            "label": None if shadow else req.decision.label,
            "source": "fallback",
            "candidates": list(req.candidates),
            "llm_answer": None,
            "error": f"not asked: the job stopped after {breaker.reason}",
        }
    error = result.error
    unread = result.source != "llm"
    if shadow and unread and error is None and result.parsed is not None:
        error = f"unreadable answer ({result.parsed.reason}): no label"
    return {
        "label": None if shadow and unread else result.label,
        "source": result.source,
        "candidates": list(req.candidates),
        "llm_answer": result.reply.text if result.reply is not None else None,
        "error": error,
    }


def atomic_name(path: Path) -> Path:
    """A temporary name beside ``path`` that this process alone writes."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
