"""A generated answer's sequence confidence, from the token logprobs its model returned.

Every measure is a probability in [0, 1], so the thresholds, targets and tables of the
classification gate (:func:`~datashunt.training.choose_threshold`) apply unchanged:

* ``mean``: the length-normalised likelihood, ``exp(mean token logprob)`` (the geometric mean
  of the token probabilities; it ranks answers exactly as the mean logprob does);
* ``min``: the probability of the least likely token, ``exp(min token logprob)``;
* ``joint``: the whole answer's probability, ``exp(sum of token logprobs)`` (not normalised:
  long answers score low);
* ``first``: the probability of the first token (for one-word answers, nearly the answer's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, LLMError

__all__ = ["MEASURES", "Measure", "SequenceConfidence", "auroc", "sequence_confidence"]

Measure = Literal["mean", "min", "joint", "first"]
MEASURES: tuple[Measure, ...] = ("mean", "min", "joint", "first")


@dataclass(frozen=True)
class SequenceConfidence:
    """The confidence measures of one generated answer.

    Attributes:
        tokens: how many tokens carried a logprob.
        mean_logprob: their mean logprob.
        min_logprob: the lowest.
        sum_logprob: their sum (the answer's log-likelihood).
        first_logprob: the first token's.
    """

    tokens: int
    mean_logprob: float
    min_logprob: float
    sum_logprob: float
    first_logprob: float

    def score(self, measure: Measure) -> float:
        """The measure as a probability in [0, 1] (see the module's doc)."""
        if measure not in MEASURES:
            raise ConfigError(f"measure must be one of {MEASURES}, got {measure!r}")
        logp = {
            "mean": self.mean_logprob,
            "min": self.min_logprob,
            "joint": self.sum_logprob,
            "first": self.first_logprob,
        }[measure]
        return math.exp(min(0.0, logp))

    def scores(self) -> dict[str, float]:
        """Every measure, by name."""
        return {m: self.score(m) for m in MEASURES}


def sequence_confidence(logprobs: Sequence[Mapping[str, Any]] | None) -> SequenceConfidence:
    """The measures from OpenAI-style token logprobs (``[{"token", "logprob"}, ...]``).

    Raises:
        LLMError: the model returned no logprobs (ask for them: ``logprobs=True``; the local
            server returns them, many hosted chat models do too).
    """
    values = [
        float(t["logprob"])
        for t in logprobs or ()
        if isinstance(t, Mapping) and isinstance(t.get("logprob"), int | float)
    ]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        raise LLMError(
            "the small model returned no token logprobs, so its confidence is unknown: ask for "
            "them (OpenAI-compatible: logprobs=True; LangChain ChatOpenAI(logprobs=True))",
            retryable=False,
        )
    return SequenceConfidence(
        tokens=len(values),
        mean_logprob=sum(values) / len(values),
        min_logprob=min(values),
        sum_logprob=sum(values),
        first_logprob=values[0],
    )


def auroc(scores: npt.ArrayLike, correct: npt.ArrayLike) -> float | None:
    """The probability that a right answer scores above a wrong one (ties count half): how well
    a measure separates right from wrong. ``None`` when either class is empty."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(correct, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return None
    # rank-sum (Mann-Whitney U) with average ranks for ties
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(allv.size)
    i = 0
    while i < allv.size:
        j = i
        while j + 1 < allv.size and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos_ranks = ranks[np.argsort(order, kind="mergesort")][: pos.size]
    u = pos_ranks.sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))
