"""Scoring the methods, and the baselines they are held against: the random and the oracle
router at the shunt's LLM rate, and the accuracy-vs-call-rate curve as δ sweeps."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import Dataset
from .tasks import METHODS

__all__ = [
    "ROUTERS",
    "Answer",
    "Outcomes",
    "curve",
    "groups",
    "oracle_accuracy",
    "oracle_router",
    "random_accuracy",
    "random_router",
    "route_lowest",
    "score",
]


@dataclass(frozen=True)
class Answer:
    """What one LLM-routed input got.

    Attributes:
        label: the final label (the gate's when the LLM's answer could not be used).
        source: ``"llm"``, or ``"fallback"`` when the call failed or its answer was unreadable.
        prompt_tokens: tokens in the prompt, as the provider reported them (0 if not).
        completion_tokens: tokens in the answer, likewise.
        latency_s: what the answer cost (the cached cost when it came from the answer cache).
    """

    label: str
    source: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def is_right(self, gold: str, *, strict: bool = False) -> bool:
        """Whether the final label is ``gold``. ``strict``: a fallback counts as wrong (the LLM
        alone has no gate to fall back on)."""
        return self.label == gold and (self.source == "llm" or not strict)


def score(
    y: np.ndarray,
    labels: tuple[str, ...],
    ans: Mapping[int, Answer],
    base_s: float,
    small_correct: np.ndarray,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """A method's figures: the gate answers every input not in ``ans``.

    The shunt answers with the gate's label when the LLM's answer cannot be read (a fallback);
    the LLM alone has no gate to fall back on (``strict``): such an answer is wrong.
    """
    n = len(y)
    correct = small_correct.copy()
    for i, a in ans.items():
        correct[i] = a.is_right(labels[y[i]], strict=strict)
    calls = len(ans)
    llm_s = sum(a.latency_s for a in ans.values())
    return {
        "accuracy": float(correct.mean()),
        "llm_rate": calls / n,
        "llm_calls": calls,
        "tokens": sum(a.tokens for a in ans.values()),
        "prompt_tokens": sum(a.prompt_tokens for a in ans.values()),
        "completion_tokens": sum(a.completion_tokens for a in ans.values()),
        "fallbacks": sum(a.source != "llm" for a in ans.values()),
        "llm_s": round(llm_s, 3),
        "wall_s": round(base_s + llm_s, 3),
        # the LLM's own accuracy where it was asked: an unreadable answer counts as wrong
        "llm_accuracy_on_routed": (
            float(np.mean([a.is_right(labels[y[i]], strict=True) for i, a in ans.items()]))
            if ans
            else None
        ),
    }


def random_accuracy(rate: float, small_accuracy: float, llm_accuracy: float) -> float:
    """The expected accuracy of sending a random share ``rate`` of the inputs to the LLM."""
    return (1 - rate) * small_accuracy + rate * llm_accuracy


def oracle_accuracy(k: int, small_correct: np.ndarray, llm_correct: np.ndarray) -> float:
    """The accuracy of hindsight routing of ``k`` inputs: first where the LLM helps, then where
    it changes nothing, then where it hurts."""
    helps = int(np.sum(~small_correct & llm_correct))
    neutral = int(np.sum(small_correct == llm_correct))
    n = len(small_correct)
    return float(small_correct.mean() + (min(k, helps) - max(0, k - helps - neutral)) / n)


def route_lowest(
    score: np.ndarray, small_correct: np.ndarray, llm_correct: np.ndarray, k: int
) -> np.ndarray:
    """Per-input correctness when exactly the ``k`` lowest-scored inputs go to the LLM (ties:
    the earlier input first), whatever δ would do with ties."""
    order = np.argsort(np.asarray(score, dtype=np.float64), kind="stable")
    routed = np.zeros(len(order), dtype=bool)
    routed[order[:k]] = True
    return np.asarray(np.where(routed, llm_correct, small_correct), dtype=bool)


@dataclass(frozen=True)
class Outcomes:
    """What the routers choose from, per test input.

    Attributes:
        small_correct: whether the gate alone is right.
        llm_correct: whether the LLM alone is right (an unreadable answer falls back to the
            gate's label, as in the shunt).
        llm_answers: the LLM-alone answer per input index (tokens and cost).
        gate_s: the gate's pass over the test inputs, in seconds.
    """

    small_correct: np.ndarray
    llm_correct: np.ndarray
    llm_answers: Mapping[int, Answer]
    gate_s: float

    @property
    def n(self) -> int:
        """The number of test inputs."""
        return len(self.small_correct)


def random_router(k: int, o: Outcomes) -> dict[str, Any]:
    """The expected figures of sending ``k`` inputs, chosen at random, to the LLM."""
    r = k / o.n
    tokens = sum(a.tokens for a in o.llm_answers.values())
    llm_s = sum(a.latency_s for a in o.llm_answers.values())
    return {
        "accuracy": float(random_accuracy(r, o.small_correct.mean(), o.llm_correct.mean())),
        "llm_rate": r,
        "llm_calls": k,
        "tokens": round(r * tokens),
        "wall_s": round(o.gate_s + r * llm_s, 3),
        "note": "expectation over random choices of the routed inputs",
    }


def oracle_router(k: int, o: Outcomes) -> dict[str, Any]:
    """Hindsight routing of ``k`` inputs: first those the gate gets wrong and the LLM right."""
    small, llm = o.small_correct, o.llm_correct
    helps = [i for i in range(o.n) if not small[i] and llm[i]]
    hurts = [i for i in range(o.n) if small[i] and not llm[i]]
    neutral = [i for i in range(o.n) if small[i] == llm[i]]
    rng = random.Random(0)  # noqa: S311 - which neutral inputs fill the quota does not matter
    rng.shuffle(neutral)
    rest = neutral + hurts  # the LLM is asked where it cannot hurt before where it would
    chosen = (helps + rest)[:k]
    correct = small.copy()
    for i in chosen:
        correct[i] = llm[i]
    return {
        "accuracy": float(correct.mean()),
        "llm_rate": k / o.n,
        "llm_calls": k,
        "tokens": sum(o.llm_answers[i].tokens for i in chosen),
        "wall_s": round(o.gate_s + sum(o.llm_answers[i].latency_s for i in chosen), 3),
        "note": "upper bound of routing: the LLM is asked where it is right and the gate wrong",
    }


#: The baselines by method name: ``router(k, outcomes)`` sends ``k`` inputs to the LLM.
ROUTERS: Mapping[str, Callable[[int, Outcomes], dict[str, Any]]] = {
    "random": random_router,
    "oracle": oracle_router,
}


def groups(
    test: Dataset,
    answers: Mapping[str, Mapping[int, Answer]],
    small_correct: np.ndarray,
    y: np.ndarray,
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """Accuracy and LLM rate per slice (e.g. product category) for the measured methods."""
    names = sorted({e.group for e in test.examples if e.group})
    if not names:
        return {}
    out: dict[str, Any] = {}
    for g in names:
        idx = [i for i, e in enumerate(test.examples) if e.group == g]
        row: dict[str, Any] = {"n": len(idx)}
        row["small"] = {"accuracy": float(small_correct[idx].mean()), "llm_rate": 0.0}
        for key, ans in answers.items():
            strict = key == "llm"  # the LLM alone has no gate to fall back on
            correct = [
                ans[i].is_right(labels[y[i]], strict=strict) if i in ans else bool(small_correct[i])
                for i in idx
            ]
            row[key] = {
                "accuracy": float(np.mean(correct)),
                "llm_rate": float(np.mean([i in ans for i in idx])),
            }
        out[g] = {k: row[k] for k in ("n", *[m for m in METHODS if m in row])}
    return out


def curve(
    conf: np.ndarray, small_correct: np.ndarray, llm_correct: np.ndarray, points: int
) -> dict[str, list[float]]:
    """Accuracy as δ sweeps: the k least confident inputs go to the LLM (no pruning).

    As in the shunt, an unreadable answer falls back to the gate, so at rate 1 the curve can sit
    above the LLM-alone line. The oracle and random columns are the routers' accuracies at each
    rate, in closed form (the routers pick their inputs only at the shunt's own rate).
    """
    n = len(conf)
    order = np.argsort(conf, kind="stable")
    gain = (llm_correct.astype(float) - small_correct.astype(float))[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    base = float(small_correct.mean())
    llm_accuracy = float(llm_correct.mean())
    rates, ds, oracle, rnd, deltas = [], [], [], [], []
    for r in np.linspace(0.0, 1.0, points):
        k = int(round(r * n))
        rates.append(k / n)
        ds.append(base + cum[k] / n)
        # hindsight: where the LLM helps, then where it changes nothing, then where it hurts
        oracle.append(oracle_accuracy(k, small_correct, llm_correct))
        rnd.append(random_accuracy(k / n, base, llm_accuracy))
        deltas.append(float(conf[order[k - 1]]) if k > 0 else 0.0)
    return {"llm_rate": rates, "ds_none": ds, "oracle": oracle, "random": rnd, "delta": deltas}
