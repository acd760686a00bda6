"""A learned deferral score fitted on dev, where the gate's probabilities are honest.

The shunt routes the inputs the gate is least sure of to the LLM. A learned deferral score
instead ranks inputs by an estimate of the LLM's *benefit* on them, ``1[LLM right] - 1[gate
right]`` (RouteLLM and Gatekeeper learn routers this way), from the gate's probabilities, the
probabilities of the other gates it was mixed from and the input's length.

A gate trained on the train split is over-confident there, so a head learned on its train
probabilities learns the wrong thing (the train-split :class:`~.ranking.DeferralHead` loses to
the maximum probability on isear's dev). This head is learned on **dev** with K-fold
cross-fitting: each dev input is scored by a head fitted on the other folds
(:func:`cross_fitted_scores`), so the dev comparison with the confidence, and the choice between
them (:func:`~.ranking.choose_score`), stay honest; the test inputs are scored by a head
refitted on all of dev (:func:`dev_deferral`). ``bench/deferral.py`` measures it (issue 18).

Every score here is "higher = keep with the gate", like a confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ...errors import ConfigError

__all__ = [
    "BenefitHead",
    "DevDeferral",
    "confidence_features",
    "cross_fitted_scores",
    "deferral_features",
    "dev_deferral",
    "gain",
    "member_features",
    "stratified_folds",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


def gain(small_correct: Any, llm_correct: Any) -> IntArray:
    """The LLM's benefit per input: +1 right where the gate is wrong, -1 the reverse, else 0."""
    return np.asarray(llm_correct, dtype=np.int64) - np.asarray(small_correct, dtype=np.int64)


def confidence_features(probs: Any) -> FloatArray:
    """Sorted probabilities (descending), margin, entropy and the predicted class one-hot:
    ``(n, 2k + 2)`` for ``k`` labels."""
    p = np.asarray(probs, dtype=np.float64)
    s = np.sort(p, axis=1)[:, ::-1]
    margin = s[:, :1] - s[:, 1:2]
    entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1, keepdims=True)
    onehot = np.eye(p.shape[1])[p.argmax(axis=1)]
    return np.asarray(np.concatenate([s, margin, entropy, onehot], axis=1), dtype=np.float64)


def member_features(base: Any, members: Sequence[Any]) -> FloatArray:
    """Per member gate: its probabilities, its probability of the base gate's label, and
    whether its own label agrees (``(n, m * (k + 2))``; ``(n, 0)`` without members)."""
    b = np.asarray(base, dtype=np.float64)
    pred = b.argmax(axis=1)
    rows = np.arange(len(b))
    parts: list[FloatArray] = []
    for m in members:
        q = np.asarray(m, dtype=np.float64)
        agree = (q.argmax(axis=1) == pred)[:, None].astype(np.float64)
        parts += [q, q[rows, pred][:, None], agree]
    if not parts:
        return np.zeros((len(b), 0))
    return np.asarray(np.concatenate(parts, axis=1), dtype=np.float64)


def deferral_features(probs: Any, members: Sequence[Any] = (), n_words: Any = None) -> FloatArray:
    """The head's input: :func:`confidence_features` of the (mixture) gate's probabilities,
    :func:`member_features` of the gates it was mixed from, and ``log(1 + words)``."""
    parts = [confidence_features(probs)]
    if len(members):
        parts.append(member_features(probs, members))
    if n_words is not None:
        parts.append(np.log1p(np.asarray(n_words, dtype=np.float64))[:, None])
    return np.asarray(np.concatenate(parts, axis=1), dtype=np.float64)


def stratified_folds(strata: Any, k: int, seed: int = 0) -> list[np.ndarray[Any, Any]]:
    """``k`` folds of the indices, stratified by ``strata`` (each stratum shuffled with
    ``seed``, then dealt round-robin, continuing where the previous stratum stopped)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    s = np.asarray(strata)
    start = 0
    for v in np.unique(s):
        idx = np.flatnonzero(s == v)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            out[(start + j) % k].append(int(i))
        start += len(idx)
    return [np.sort(np.array(f, dtype=int)) for f in out]


@dataclass
class BenefitHead:
    """Multinomial logistic regression of the LLM's benefit (-1, 0, +1; :func:`gain`) on
    standardised features; the score is ``P(-1) - P(+1)`` (higher = keep with the gate).

    The objective is scikit-learn's ``LogisticRegression(C=c)`` (lbfgs, multinomial, the
    intercept not penalised): ``C * sum(log loss) + |W|^2 / 2``, minimised with L-BFGS.

    Example:
        >>> head = BenefitHead().fit(x_dev, small_ok, llm_ok)  # doctest: +SKIP
        >>> score = head.score(x_test)  # doctest: +SKIP
    """

    c: float = 0.1
    max_iter: int = 2000
    classes: tuple[int, ...] = ()
    coef: Any = None
    _mean: Any = None
    _scale: Any = None

    def fit(self, x: Any, small_correct: Any, llm_correct: Any) -> BenefitHead:
        """Learn the benefit classes from inputs with recorded answers.

        Raises:
            ConfigError: the LLM and the gate never differ, or the rows do not match.
        """
        xx = np.asarray(x, dtype=np.float64)
        g = gain(small_correct, llm_correct)
        if xx.ndim != 2 or len(xx) != len(g):
            raise ConfigError(f"features must be (n, d) with one answer each, got {xx.shape}")
        self.classes = tuple(int(v) for v in np.unique(g))
        if len(self.classes) < 2:
            raise ConfigError("the deferral head needs inputs where the LLM and the gate differ")
        self._mean = xx.mean(axis=0)
        std = xx.std(axis=0)
        self._scale = np.where(std > 0, std, 1.0)
        z = (xx - self._mean) / self._scale
        n, d = z.shape
        kk = len(self.classes)
        y = np.searchsorted(np.array(self.classes), g)
        onehot = np.eye(kk)[y]
        z1 = np.concatenate([z, np.ones((n, 1))], axis=1)
        penalised = np.ones((d + 1, 1))
        penalised[-1] = 0.0  # the intercept
        scale = 1.0 / (self.c * n)  # the objective divided by C n: the same optimum

        def objective(flat: FloatArray) -> tuple[float, FloatArray]:
            w = flat.reshape(d + 1, kk)
            logits = z1 @ w
            logits -= logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            loss = -(onehot * logp).sum() / n + 0.5 * scale * ((w * penalised) ** 2).sum()
            grad = z1.T @ (np.exp(logp) - onehot) / n + scale * w * penalised
            return float(loss), grad.ravel()

        res = minimize(
            objective,
            np.zeros((d + 1) * kk),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": 1e-8},
        )
        self.coef = res.x.reshape(d + 1, kk)
        return self

    def score(self, x: Any) -> FloatArray:
        """``P(gate right, LLM wrong) - P(LLM right, gate wrong)``: higher = keep with the gate.

        Raises:
            ConfigError: the head is not fitted.
        """
        if self.coef is None:
            raise ConfigError("fit the deferral head first")
        z = (np.asarray(x, dtype=np.float64) - self._mean) / self._scale
        logits = np.concatenate([z, np.ones((len(z), 1))], axis=1) @ self.coef
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        worse = p[:, self.classes.index(-1)] if -1 in self.classes else 0.0
        better = p[:, self.classes.index(1)] if 1 in self.classes else 0.0
        return np.asarray(worse - better, dtype=np.float64) + np.zeros(len(z))


def cross_fitted_scores(
    x: Any,
    small_correct: Any,
    llm_correct: Any,
    *,
    strata: Any = None,
    k: int = 5,
    seed: int = 0,
    c: float = 0.1,
) -> FloatArray:
    """Each input's :class:`BenefitHead` score from a head fitted on the other ``k - 1`` folds
    (:func:`stratified_folds` by ``strata``, default the benefit; fixed ``seed``).

    Raises:
        ConfigError: fewer inputs than folds, or a fold's training part where the LLM and the
            gate never differ.
    """
    xx = np.asarray(x, dtype=np.float64)
    sm, ll = np.asarray(small_correct, dtype=bool), np.asarray(llm_correct, dtype=bool)
    if k < 2 or len(xx) < k:
        raise ConfigError(f"cross-fitting needs k >= 2 and at least k inputs, got {len(xx)}")
    out = np.empty(len(xx))
    everything = np.arange(len(xx))
    for fold in stratified_folds(gain(sm, ll) if strata is None else strata, k, seed):
        rest = np.setdiff1d(everything, fold)
        out[fold] = BenefitHead(c=c).fit(xx[rest], sm[rest], ll[rest]).score(xx[fold])
    return out


@dataclass(frozen=True)
class DevDeferral:
    """A deferral score learned on dev.

    Attributes:
        cross_fitted: each dev input's score from a head that did not see it (for choosing
            the score and reporting dev accuracy).
        refit_dev: the dev scores of the head refitted on all of dev (δ for a budget is their
            quantile, so that test, scored by the same head, gets the budget's share).
        test: the test scores of that head.
    """

    cross_fitted: FloatArray
    refit_dev: FloatArray
    test: FloatArray


def dev_deferral(
    x_dev: Any,
    small_correct: Any,
    llm_correct: Any,
    x_test: Any,
    pred: Any = None,
    *,
    k: int = 5,
    seed: int = 0,
    c: float = 0.1,
) -> DevDeferral:
    """Cross-fit a :class:`BenefitHead` on dev (folds stratified by the benefit and, given
    ``pred``, the gate's label), then refit it on all of dev and score the test inputs.

    Raises:
        ConfigError: see :func:`cross_fitted_scores`.
    """
    g = gain(small_correct, llm_correct)
    strata = g * 100 + (0 if pred is None else np.asarray(pred, dtype=np.int64))
    cross = cross_fitted_scores(
        x_dev, small_correct, llm_correct, strata=strata, k=k, seed=seed, c=c
    )
    head = BenefitHead(c=c).fit(x_dev, small_correct, llm_correct)
    return DevDeferral(cross, head.score(x_dev), head.score(x_test))
