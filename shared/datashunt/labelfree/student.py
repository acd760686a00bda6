"""A student learned from the LLM's answers alone: a softmax head on frozen sentence embeddings.

No gold label is read anywhere in this package. The training labels are the LLM's *parsed*
answers; an unreadable answer (``None``: the reply named no label) is never a training label
(:func:`usable_answers`). The head is the same model as :class:`~datashunt.gates.EmbeddingGate`
(L2-regularised multinomial logistic regression on normalised MiniLM embeddings), fitted here on
embeddings the caller already holds, so a stream can refit it every few hundred answers in well
under a second and warm-start each fit from the previous round's weights.

``EmbeddingStudent.to_gate()`` turns it into an :class:`~datashunt.gates.EmbeddingGate` that the
engine serves and the registry stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ..errors import ConfigError, DataError

__all__ = [
    "EmbeddingStudent",
    "FloatArray",
    "IntArray",
    "fit_softmax_head",
    "usable_answers",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


def usable_answers(
    answers: Sequence[str | None], labels: Sequence[str]
) -> tuple[IntArray, IntArray]:
    """The rows whose LLM answer is one of ``labels``, and that answer's index.

    An empty, ``None`` or unknown answer (the LLM's reply could not be parsed into a label) is
    skipped: it is never a training label.

    Returns:
        ``(rows, y)``: positions in ``answers`` and label indices, both ``int64``.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    rows = [i for i, a in enumerate(answers) if a is not None and a in index]
    y = [index[str(answers[i])] for i in rows]
    return np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=np.int64)


def _softmax(z: FloatArray) -> FloatArray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def fit_softmax_head(
    x: Any,
    y: Any,
    k: int,
    *,
    l2: float = 1e-3,
    init: tuple[FloatArray, FloatArray] | None = None,
    weights: Any = None,
    max_iter: int = 300,
) -> tuple[FloatArray, FloatArray]:
    """Multinomial logistic regression: ``mean(w * CE) + l2 * |W|^2`` (EmbeddingGate.fit's
    objective; the bias not penalised), by L-BFGS.

    Args:
        x: ``(n, d)`` features.
        y: ``(n,)`` label indices in ``[0, k)``.
        k: number of labels (a label with no example still gets a row).
        init: ``(W, b)`` to start from (the previous round's head): fewer iterations.
        weights: optional per-example weights (mean 1 is the natural scale).

    Returns:
        ``(W, b)`` with shapes ``(k, d)`` and ``(k,)``.

    Raises:
        DataError: no examples, or a label index outside ``[0, k)``.
    """
    xx = np.asarray(x, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64)
    if xx.ndim != 2 or len(xx) == 0 or len(xx) != len(yy):
        raise DataError(f"the student needs (n, d) features with one label each, got {xx.shape}")
    if yy.min() < 0 or yy.max() >= k:
        raise DataError(f"label indices must lie in [0, {k}), got {int(yy.min())}..{yy.max()}")
    n, d = xx.shape
    w8 = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    onehot = np.eye(k)[yy]
    x1 = np.concatenate([xx, np.ones((n, 1))], axis=1)
    penal = np.ones((d + 1, 1))
    penal[-1] = 0.0

    def objective(flat: FloatArray) -> tuple[float, FloatArray]:
        w = flat.reshape(d + 1, k)
        logits = x1 @ w
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -(w8 * (onehot * logp).sum(axis=1)).sum() / n + l2 * ((w * penal) ** 2).sum()
        grad = x1.T @ (w8[:, None] * (np.exp(logp) - onehot)) / n + 2 * l2 * w * penal
        return float(loss), np.asarray(grad, dtype=np.float64).ravel()

    start = np.zeros((d + 1, k))
    if init is not None and init[0].shape == (k, d):
        start[:d] = init[0].T
        start[d] = init[1]
    res = minimize(
        objective, start.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    w = res.x.reshape(d + 1, k)
    return np.ascontiguousarray(w[:d].T), np.asarray(w[d], dtype=np.float64)


@dataclass
class EmbeddingStudent:
    """A softmax head over frozen sentence embeddings, learned from the LLM's answers.

    Args:
        labels: the label names, in output order.
        l2: the head's L2 penalty.
        replay: when refitting, how much the newest answers weigh against older ones: each
            answer's weight is ``1 + replay * age_rank`` scaled to mean 1 (0 = all equal).

    Example:
        >>> s = EmbeddingStudent(("negative", "positive")).fit(x, ["positive", None, ...])
        ... # doctest: +SKIP
        >>> probs = s.predict_proba(x_new)  # doctest: +SKIP
    """

    labels: tuple[str, ...]
    l2: float = 1e-3
    replay: float = 0.0
    weight: FloatArray | None = None
    bias: FloatArray | None = None
    n_answers: int = 0
    history: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"a student needs at least two distinct labels, got {self.labels}")
        if self.l2 < 0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def fit(self, x: Any, answers: Sequence[str | None], *, warm: bool = True) -> EmbeddingStudent:
        """Fit the head on the rows of ``x`` whose answer is a label (others are skipped).

        Args:
            x: ``(n, d)`` sentence embeddings, one per answer.
            answers: the LLM's parsed label per row, ``None`` when unreadable.
            warm: start from the current weights (the previous round's) when there are any.

        Raises:
            DataError: no usable answer, or fewer than two distinct labels among them.
        """
        rows, y = usable_answers(answers, self.labels)
        return self.fit_indices(np.asarray(x)[rows], y, warm=warm)

    def fit_indices(self, x: Any, y: Any, *, warm: bool = True) -> EmbeddingStudent:
        """Fit on features and label indices (answers already filtered, oldest first)."""
        yy = np.asarray(y, dtype=np.int64)
        if len(yy) == 0 or len(np.unique(yy)) < 2:
            raise DataError(
                f"the student needs readable LLM answers of at least two labels, got {len(yy)} "
                f"answer(s) of {len(np.unique(yy))} label(s): let the shunt shadow longer"
            )
        weights = None
        if self.replay > 0:
            weights = 1.0 + self.replay * np.arange(len(yy)) / max(1, len(yy) - 1)
            weights = weights / weights.mean()
        init = None
        if warm and self.weight is not None and self.bias is not None:
            init = (self.weight, self.bias)
        self.weight, self.bias = fit_softmax_head(
            x, yy, len(self.labels), l2=self.l2, init=init, weights=weights
        )
        self.n_answers = len(yy)
        self.history.append(len(yy))
        return self

    def logits(self, x: Any) -> FloatArray:
        """``(n, k)`` logits.

        Raises:
            ConfigError: the student was never fitted.
        """
        if self.weight is None or self.bias is None:
            raise ConfigError("the student has not been fitted: call fit() with LLM answers")
        return np.asarray(np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias)

    def predict_proba(self, x: Any) -> FloatArray:
        """``(n, k)`` class probabilities."""
        return _softmax(self.logits(x))

    def predict(self, x: Any) -> list[str]:
        """The most probable label per row."""
        return [self.labels[i] for i in self.predict_proba(x).argmax(axis=1)]

    def to_gate(self, backbone: str | Path | None = None) -> Any:
        """The :class:`~datashunt.gates.EmbeddingGate` with this head (loads the encoder)."""
        from ..gates.embedding import EmbeddingGate

        if self.weight is None or self.bias is None:
            raise ConfigError("the student has not been fitted: nothing to turn into a gate")
        return EmbeddingGate(self.labels, self.weight, self.bias, backbone=backbone)
