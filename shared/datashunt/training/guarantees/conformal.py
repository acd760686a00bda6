"""Conformal label sets: hard pruning with a coverage guarantee (split conformal, LAC).

The score of a labelled calibration input is ``1 - p(true label)`` (the least-ambiguous set
classifier, LAC: Sadinle, Lei, Wasserman, "Least Ambiguous Set-Valued Classifiers with Bounded
Error Levels", JASA 2019; split conformal as in Angelopoulos and Bates, "A Gentle Introduction
to Conformal Prediction", 2021). With ``q`` the ``ceil((n + 1)(1 - α)) / n`` empirical quantile
of the n scores, the set ``{y : 1 - p(y) <= q}`` holds the true label of a new input with
probability at least ``1 - α`` (and below ``1 - α + 1 / (n + 1)``), on average over the
calibration sample and the new input, if they are exchangeable. The set is never empty here:
an empty set gets the top label (which can only raise coverage).

The shunt uses the set as the hard-pruned candidates (prompt modes ``hard`` and ``both``): the
LLM sees only the set's labels, and a set of one label is answered by the gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...gates import FloatArray
from ...prompts import conformal_candidates

__all__ = ["ConformalSets", "conformal_set", "fit_conformal"]


@dataclass(frozen=True)
class ConformalSets:
    """A fitted split-conformal set rule, stored in the policy as data (``to_json``).

    Attributes:
        alpha: the miscoverage the user chose (coverage ``1 - alpha``).
        qhat: the score quantile: a label is in the set when ``1 - p(label) <= qhat``.
        n: calibration examples.
        method: ``"lac"``.
    """

    alpha: float
    qhat: float
    n: int
    method: str = "lac"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"conformal alpha must be in (0, 1), got {self.alpha}")

    @property
    def coverage(self) -> float:
        return 1.0 - self.alpha

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "alpha": self.alpha, "qhat": self.qhat, "n": self.n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConformalSets:
        try:
            return cls(float(data["alpha"]), float(data["qhat"]), int(data["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"conformal settings {dict(data)} need alpha, qhat and n") from exc


def fit_conformal(probs: FloatArray, y: Sequence[int] | np.ndarray, alpha: float) -> ConformalSets:
    """Fit the LAC rule on calibration probabilities ``(n, k)`` and true label indices.

    Raises:
        DataError: fewer calibration inputs than ``1 / alpha - 1`` (the quantile would be
            beyond the sample: every set would be every label).
    """
    p = np.asarray(probs, dtype=float)
    idx = np.asarray(y, dtype=int)
    n = len(idx)
    ConformalSets(alpha, 0.0, n)  # validates alpha
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        raise DataError(
            f"coverage {1 - alpha:.0%} needs at least {math.ceil(1 / alpha) - 1} calibration "
            f"examples, got {n}"
        )
    scores = np.sort(1.0 - p[np.arange(n), idx])
    return ConformalSets(alpha, float(scores[rank - 1]), n)


def conformal_set(
    probabilities: Mapping[str, float], rule: ConformalSets, labels: Sequence[str]
) -> tuple[str, ...]:
    """The labels whose score is within the rule's quantile, in label order; never empty."""
    return conformal_candidates(probabilities, tuple(labels), rule.qhat)
