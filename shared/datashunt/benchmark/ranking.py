"""Choosing how a gate ranks its inputs, on dev, with recorded LLM answers: a mixture of gates
(:class:`~datashunt.gates.ensemble.EnsembleGate`), per-class temperatures and the learned
deferral score ``deferral-dev`` (:func:`deferral_dev_scores`).

Every candidate is scored the way the shunt is used: the mean dev accuracy of routing the
least-confident inputs to the LLM over a set of call budgets (the criterion of
:func:`datashunt.training.guarantees.ranking.choose_score`). A candidate that changes the gate's
predictions (a mixture) is scored with its own predictions, and an unreadable LLM answer falls
back to that candidate's label, as in the shunt.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import minimize

from ..errors import ConfigError
from ..gates.base import softmax
from ..gates.ensemble import EnsembleGate, Mode, mix_probabilities
from ..training.guarantees.deferral import DevDeferral, deferral_features, dev_deferral
from ..training.guarantees.ranking import auroc, budget_threshold, routed_accuracy

if TYPE_CHECKING:
    from ..gates import Gate

__all__ = [
    "DEV_DEFERRAL",
    "MixtureChoice",
    "choose_mixture",
    "class_temperatures",
    "deferral_dev_scores",
    "member_probabilities",
    "routing_accuracy",
]

#: The name of the deferral score learned on dev among the candidate ranking scores.
DEV_DEFERRAL = "deferral-dev"

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def routing_accuracy(
    probs: FloatArray,
    y: Any,
    llm_right: Any,
    llm_readable: Any,
    budgets: Sequence[float],
    score: FloatArray | None = None,
) -> tuple[float, float]:
    """(mean accuracy over ``budgets``, AUROC) of routing by ``score`` (default: the maximum
    probability) where the LLM's answers are ``llm_right``, and the gate's label stands in
    for an unreadable one (``llm_readable`` false)."""
    p = np.asarray(probs, dtype=np.float64)
    small = np.asarray(p.argmax(axis=1) == np.asarray(y))
    llm = np.where(np.asarray(llm_readable, dtype=bool), np.asarray(llm_right, dtype=bool), small)
    s = p.max(axis=1) if score is None else np.asarray(score, dtype=np.float64)
    accs = [routed_accuracy(s, small, llm, budget_threshold(s, b))[0] for b in budgets]
    return float(np.mean(accs)), auroc(s, small)


@dataclass(frozen=True)
class MixtureChoice:
    """The mixture of member gates chosen on dev.

    Attributes:
        weights: one per member (summing to 1).
        mode: ``"prob"`` or ``"logit"`` (see :class:`~datashunt.gates.ensemble.EnsembleGate`).
        dev_accuracy: its mean dev routing accuracy over the budgets.
        dev_auroc: its dev AUROC of the maximum probability for "the gate is right".
        table: every candidate tried: ``{"mode", "weights", "dev_accuracy", "dev_auroc"}``.
    """

    weights: tuple[float, ...]
    mode: Mode
    dev_accuracy: float
    dev_auroc: float
    table: tuple[dict[str, Any], ...]


def choose_mixture(
    member_probs: Sequence[FloatArray],
    y: Any,
    llm_right: Any,
    llm_readable: Any,
    budgets: Sequence[float] = (0.2, 0.3, 0.4, 0.5),
    *,
    step: float = 0.1,
    modes: Sequence[Mode] = ("prob", "logit"),
) -> MixtureChoice:
    """The weights (a grid of ``step`` on the simplex) and mode with the best mean dev routing
    accuracy. The first member alone is one of the candidates and wins ties, so a mixture is
    kept only where it beats it on dev.

    Args:
        member_probs: each member's temperature-scaled dev probabilities, ``(n, k)``.
        y: dev label indices.
        llm_right: whether the LLM's recorded answer is right, per dev input.
        llm_readable: whether it named a label at all.
        budgets: LLM-call budgets the accuracy is averaged over.

    Raises:
        ConfigError: no member, shapes that differ, or a step outside (0, 1].
    """
    if not member_probs:
        raise ConfigError("choose_mixture needs at least one member's probabilities")
    shape = np.shape(member_probs[0])
    if any(np.shape(p) != shape for p in member_probs):
        raise ConfigError("every member's probabilities must have the same shape")
    if not 0.0 < step <= 1.0:
        raise ConfigError(f"step must be in (0, 1], got {step}")
    n = len(member_probs)
    ticks = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    first = (1.0,) + (0.0,) * (n - 1)
    candidates: list[tuple[Mode, tuple[float, ...]]] = [(modes[0], first)]
    for rest in itertools.product(ticks, repeat=n - 1):
        w0 = round(1.0 - sum(rest), 10)
        w = (float(w0), *(float(r) for r in rest))
        if w0 < -1e-9 or w == first:
            continue
        candidates.extend((m, w) for m in modes)
    table: list[dict[str, Any]] = []
    for mode, w in candidates:
        probs = softmax(mix_probabilities(member_probs, w, mode))
        acc, au = routing_accuracy(probs, y, llm_right, llm_readable, budgets)
        table.append({"mode": mode, "weights": list(w), "dev_accuracy": acc, "dev_auroc": au})
    best = max(range(len(table)), key=lambda i: (table[i]["dev_accuracy"], -i))
    b = table[best]
    return MixtureChoice(
        tuple(b["weights"]), b["mode"], b["dev_accuracy"], b["dev_auroc"], tuple(table)
    )


def class_temperatures(logits: FloatArray, y: Any) -> FloatArray:
    """One temperature per class, ``softmax(logits / T)`` with ``T`` a vector, minimising the
    negative log-likelihood of ``y`` (L-BFGS on ``log T``, from T = 1).

    With classes whose logits are over- or under-confident by different amounts, this changes
    the ranking of inputs by their maximum probability, which one shared temperature cannot.
    """
    z = np.asarray(logits, dtype=np.float64)
    yy = np.asarray(y)
    if z.ndim != 2 or len(z) != len(yy) or len(z) == 0:
        raise ConfigError(f"logits must be (n, k) with one label each, got {z.shape}")
    rows = np.arange(len(yy))

    def nll(log_t: FloatArray) -> tuple[float, FloatArray]:
        t = np.exp(log_t)
        q = z / t
        p = softmax(q)
        loss = -np.log(np.clip(p[rows, yy], 1e-300, 1.0)).mean()
        # d loss / d q = (p - onehot) / n; d q / d log t_c = -q[:, c]
        onehot = np.zeros_like(p)
        onehot[rows, yy] = 1.0
        grad = -((p - onehot) * q).sum(axis=0) / len(yy)
        return float(loss), grad

    res = minimize(
        nll, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B", bounds=[(-4.0, 4.0)] * z.shape[1]
    )
    return np.asarray(np.exp(res.x), dtype=np.float64)


def member_probabilities(
    gate: Gate, members: Sequence[Gate] | None, texts: Sequence[str]
) -> list[FloatArray]:
    """The probabilities of the gates the deferral score reads beside ``gate``'s own:
    ``members`` (the gates given with ``--gate A+B``, even where the first alone was chosen),
    else an ensemble's members (from its memo), else none."""
    if members is None:
        members = gate.members if isinstance(gate, EnsembleGate) else []
    if isinstance(gate, EnsembleGate) and list(members) == gate.members:
        return gate.member_probabilities(texts)
    return [np.asarray(m.predict_proba(list(texts)), dtype=np.float64) for m in members]


def deferral_dev_scores(
    gate: Gate,
    members: Sequence[Gate] | None,
    texts: tuple[Sequence[str], Sequence[str]],
    probs: tuple[FloatArray, FloatArray],
    small_correct: Any,
    llm_correct: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    c: float = 0.1,
) -> tuple[DevDeferral, dict[str, Any]]:
    """The ``deferral-dev`` score (:func:`datashunt.training.guarantees.deferral.dev_deferral`): a
    logistic head of the LLM's benefit on the gate's confidence features, its members'
    probabilities and agreement (:func:`member_probabilities`) and the log word count,
    cross-fitted on dev (``folds`` folds stratified by the benefit and the gate's label), then
    refitted on all of dev to score test.

    Args:
        texts, probs: (dev, test) texts and the gate's temperature-scaled probabilities.
        small_correct, llm_correct: per dev input (an unreadable LLM answer: the gate's).

    Returns:
        The scores, and what was fitted (JSON-ready).
    """

    def x(i: int) -> tuple[FloatArray, int]:
        m = member_probabilities(gate, members, texts[i])
        words = [len(t.split()) for t in texts[i]]
        return deferral_features(probs[i], m, words), len(m)

    (x_dev, n_members), (x_test, _) = x(0), x(1)
    pred = np.asarray(probs[0]).argmax(axis=1)
    dd = dev_deferral(x_dev, small_correct, llm_correct, x_test, pred, k=folds, seed=seed, c=c)
    info = {
        "tried": True,
        "fitted_on": "dev, cross-fitted (test: refitted on all of dev)",
        "members": n_members,
        "n_features": int(x_dev.shape[1]),
        "folds": folds,
        "seed": seed,
        "c": c,
    }
    return dd, info
