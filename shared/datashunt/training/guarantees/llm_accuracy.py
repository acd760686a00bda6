"""The LLM's accuracy on a dev sample, for :class:`~datashunt.training.MaxAccuracy`.

Every call goes through the engine (:meth:`datashunt.engine.Shunt.ask` with ``record=False``):
it is timed, retried and parsed as in production. A measurement that is mostly failures
measures the outage, not the LLM, and is refused with how many calls failed and why.
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...data import Dataset
from ...errors import LLMError
from ...gates import FloatArray, Gate
from ...llm.retry import RetryPolicy
from ...policy import ShuntPolicy

__all__ = ["LLMMeasurement", "measure_llm", "measure_llm_sample"]


@dataclass(frozen=True)
class LLMMeasurement:
    """The LLM asked about a dev sample: per-example correctness and what failed.

    Attributes:
        correct: per dev example, 1.0 right, 0.0 wrong (an unparseable answer or a failed
            call counts as wrong: that is what it costs), NaN where not asked.
        asked: calls made; failed: calls that raised (after retries).
        reasons: the failures' messages with their counts, most common first.
        stopped_early: the first calls all failed, so the rest were not made.
    """

    correct: FloatArray
    asked: int
    failed: int
    reasons: tuple[tuple[str, int], ...] = ()
    stopped_early: bool = False

    @property
    def accuracy(self) -> float:
        """Share right among the calls made (failures count as wrong); NaN when none."""
        done = self.correct[~np.isnan(self.correct)]
        return float(done.mean()) if done.size else math.nan

    def raise_if_failing(self, max_failure_rate: float = 0.5) -> None:
        """Refuse a measurement that is mostly failures: it measures the outage, not the LLM.

        Raises:
            LLMError: more than ``max_failure_rate`` of the calls failed (or none was made),
                saying how many and why.
        """
        if self.asked and self.failed <= max_failure_rate * self.asked:
            return
        why = "; ".join(f"{msg} (x{k})" for msg, k in self.reasons[:2]) or "no call was made"
        early = " (stopped after the first calls all failed)" if self.stopped_early else ""
        raise LLMError(
            f"{self.failed} of {self.asked} LLM calls failed{early}: {why}. The LLM's accuracy "
            "cannot be measured like this: check that the endpoint answers and the model name "
            "is right, or give the LLM's accuracy as a number (accuracy:A)"
        )


# When this many calls have finished and every one failed, the endpoint is down: stop asking.
_STOP_AFTER_FAILURES = 10


def measure_llm_sample(
    gate: Gate,
    dev: Dataset,
    llm: Any,
    *,
    sample: int = 100,
    seed: int = 0,
    max_concurrency: int = 2,
    retry: RetryPolicy | None = None,
) -> LLMMeasurement:
    """Ask the LLM about a fixed random sample of ``dev`` (plain prompt, no gate help).

    Each call goes through the engine, :meth:`Shunt.ask` with ``record=False``: the shunt's
    retry policy applies (``retry``; default :class:`RetryPolicy`), and the answer is parsed
    as it would be in production.
    """
    from ...engine import Shunt

    n = len(dev)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    policy = ShuntPolicy(labels=tuple(gate.labels), threshold=1.0)
    shunt = Shunt(
        gate, policy, llm=llm, prompt_mode="none", max_concurrency=max_concurrency, retry=retry
    )
    plan = shunt.plan([dev.examples[i].text for i in idx], strict=False, indexed=True)
    rows = [int(idx[it.index]) for it in plan.asks]  # δ = 1: every valid input is asked
    requests = [it.request for it in plan.asks]
    out = np.full(n, np.nan)
    reasons: Counter[str] = Counter()
    failed = done = 0
    pool = ThreadPoolExecutor(max_workers=max_concurrency)
    try:
        futures = {
            pool.submit(shunt.ask, r, record=False): i
            for i, r in zip(rows, requests, strict=True)
            if r is not None
        }
        for fut in as_completed(futures):
            i, res = futures[fut], fut.result()
            done += 1
            if res.error is not None:
                failed += 1
                reasons[res.error] += 1
            out[i] = float(res.source == "llm" and res.label == dev.examples[i].label)
            if failed >= _STOP_AFTER_FAILURES and failed == done:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return LLMMeasurement(
        out, done, failed, tuple(reasons.most_common()), stopped_early=done < len(requests)
    )


def measure_llm(
    gate: Gate,
    dev: Dataset,
    llm: Any,
    *,
    sample: int = 100,
    seed: int = 0,
    max_concurrency: int = 2,
    max_failure_rate: float = 0.5,
    retry: RetryPolicy | None = None,
) -> FloatArray:
    """Per-example LLM correctness on a dev sample, for :class:`MaxAccuracy` (see
    :func:`measure_llm_sample`).

    Raises:
        LLMError: more than ``max_failure_rate`` of the calls failed.
    """
    m = measure_llm_sample(
        gate, dev, llm, sample=sample, seed=seed, max_concurrency=max_concurrency, retry=retry
    )
    m.raise_if_failing(max_failure_rate)
    return m.correct
