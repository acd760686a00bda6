"""Ranking inputs by how much they need the LLM: confidence scores, AUROC, a deferral head.

Routing quality is ranking quality: at any call rate the shunt sends the lowest-scored inputs to
the LLM, so what matters is how well a score orders the inputs, which AUROC of the score for
"the gate is right" measures. The scores here are all "higher = keep with the gate":

* ``max``: the temperature-scaled maximum probability (the paper's ``C_s``);
* ``margin``: top-1 minus top-2 probability (differs from ``max`` with more than two labels);
* a :class:`DeferralHead`: a logistic model on the gate's probabilities and input features,
  trained on inputs with recorded LLM answers to predict where the LLM is right and the gate
  wrong (the way RouteLLM and Gatekeeper learn routers).

Each is chosen on dev, never on test (:func:`choose_score`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError

__all__ = [
    "SCORES",
    "DeferralHead",
    "auroc",
    "budget_threshold",
    "choose_score",
    "max_accuracy_threshold",
    "routed_accuracy",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def _max(probs: FloatArray) -> FloatArray:
    return np.asarray(probs.max(axis=1), dtype=np.float64)


def _margin(probs: FloatArray) -> FloatArray:
    top2 = np.sort(probs, axis=1)[:, -2:]
    return np.asarray(top2[:, 1] - top2[:, 0], dtype=np.float64)


#: Confidence scores computed from the gate's probabilities alone (higher = more confident).
SCORES: Mapping[str, Callable[[FloatArray], FloatArray]] = {"max": _max, "margin": _margin}


def auroc(score: Sequence[float] | FloatArray, positive: Sequence[bool] | BoolArray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count a half).

    The probability that a random positive input scores above a random negative one; 0.5 is a
    score that knows nothing. ``nan`` when one class is empty.
    """
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (Mann-Whitney U)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def routed_accuracy(
    score: FloatArray, small_correct: BoolArray, llm_correct: BoolArray, delta: float
) -> tuple[float, float]:
    """(accuracy, LLM rate) of sending every input with ``score < delta`` to the LLM."""
    routed = score < delta
    correct = np.where(routed, llm_correct, small_correct)
    return float(correct.mean()), float(routed.mean())


def budget_threshold(score: FloatArray, budget: float) -> float:
    """The largest δ that sends at most ``budget`` of these inputs (``score < δ``) to the LLM.

    Raises:
        ConfigError: ``budget`` is not in [0, 1].
    """
    if not 0.0 <= budget <= 1.0:
        raise ConfigError(f"budget must be in [0, 1], got {budget}")
    s = np.sort(np.asarray(score, dtype=np.float64))
    k = int(np.floor(budget * len(s) + 1e-9))
    if k >= len(s):
        return float("inf")
    # δ = the (k+1)-th smallest score: exactly the k below it go to the LLM (ties stay small)
    return float(s[k])


def max_accuracy_threshold(
    score: FloatArray, small_correct: BoolArray, llm_correct: BoolArray
) -> tuple[float, float, float]:
    """(δ, accuracy, LLM rate) of the δ that maximises accuracy on these inputs (the lowest
    rate among equal accuracies)."""
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    gain = (llm_correct.astype(float) - small_correct.astype(float))[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    n = len(s)
    best_k, best = 0, cum[0]
    sorted_s = s[order]
    for k in range(1, n + 1):
        # only cut between distinct scores: a δ cannot split a tie
        if k < n and sorted_s[k] == sorted_s[k - 1]:
            continue
        if cum[k] > best + 1e-12:
            best_k, best = k, cum[k]
    delta = float(sorted_s[best_k]) if best_k < n else float("inf")
    return delta, float(small_correct.mean() + best / n), best_k / n


@dataclass
class DeferralHead:
    """A learned deferral score: logistic regression on the gate's probabilities and the
    input's features, trained where recorded LLM answers exist.

    The target per training input is the LLM's gain over the gate (+1 the LLM is right and the
    gate wrong, -1 the reverse, 0 otherwise); the score is ``P(-1) - P(+1)``, so that, like a
    confidence, higher means "keep with the gate".

    Example:
        >>> head = DeferralHead().fit(features, probs, small_ok, llm_ok)  # doctest: +SKIP
        >>> score = head.score(test_features, test_probs)  # doctest: +SKIP
    """

    c: float = 1.0
    seed: int = 0
    model: Any = None
    _mean: Any = None
    _std: Any = None

    @staticmethod
    def _x(features: FloatArray | None, probs: FloatArray) -> FloatArray:
        p = np.sort(probs, axis=1)[:, ::-1]
        entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1, keepdims=True)
        parts = [p, entropy]
        if features is not None:
            parts.append(np.asarray(features, dtype=np.float64))
        return np.concatenate(parts, axis=1)

    def fit(
        self,
        features: FloatArray | None,
        probs: FloatArray,
        small_correct: BoolArray,
        llm_correct: BoolArray,
        *,
        steps: int = 500,
        lr: float = 0.5,
    ) -> DeferralHead:
        """Learn the gain classes from training inputs with recorded answers (multinomial
        logistic regression, L2 ``1 / c``, full-batch gradient descent on standardised inputs)."""
        gain = llm_correct.astype(int) - small_correct.astype(int)
        if len(set(gain.tolist())) < 2:
            raise ConfigError("the deferral head needs inputs where the LLM and the gate differ")
        x = self._x(features, probs)
        self._mean, self._std = x.mean(axis=0), x.std(axis=0) + 1e-6
        x = np.concatenate([(x - self._mean) / self._std, np.ones((len(x), 1))], axis=1)
        onehot = np.stack([gain == -1, gain == 0, gain == 1], axis=1).astype(np.float64)
        rng = np.random.default_rng(self.seed)
        w = rng.normal(0.0, 0.01, size=(x.shape[1], 3))
        for _ in range(steps):
            p = _softmax(x @ w)
            grad = x.T @ (p - onehot) / len(x) + w / (self.c * len(x))
            w -= lr * grad
        self.model = w
        return self

    def score(self, features: FloatArray | None, probs: FloatArray) -> FloatArray:
        """Higher = keep with the gate."""
        if self.model is None:
            raise ConfigError("fit the deferral head first")
        x = (self._x(features, probs) - self._mean) / self._std
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        p = _softmax(x @ self.model)
        return np.asarray(p[:, 0] - p[:, 2], dtype=np.float64)


def _softmax(z: FloatArray) -> FloatArray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def choose_score(
    scores: Mapping[str, FloatArray],
    small_correct: BoolArray,
    llm_correct: BoolArray,
    budgets: Sequence[float] = (0.2, 0.3, 0.4, 0.5),
) -> tuple[str, dict[str, dict[str, float]]]:
    """The score with the best mean accuracy over ``budgets`` on these (dev) inputs.

    Returns:
        The chosen name, and per score its mean accuracy over the budgets and its AUROC for
        "the gate is right".
    """
    table: dict[str, dict[str, float]] = {}
    for name, s in scores.items():
        accs = [
            routed_accuracy(s, small_correct, llm_correct, budget_threshold(s, b))[0]
            for b in budgets
        ]
        table[name] = {
            "mean_accuracy": float(np.mean(accs)),
            "auroc_gate_right": auroc(s, small_correct),
        }
    best = max(table, key=lambda k: table[k]["mean_accuracy"])
    return best, table
