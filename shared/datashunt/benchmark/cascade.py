"""A cascade over recorded answers: gate -> cheaper LLM -> dearer LLM, one threshold per tier
(FrugalGPT's idea on top of the gate), chosen on dev under a cost cap and measured on test
through the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..engine import Shunt
from ..errors import ConfigError
from ..training.guarantees.ranking import budget_threshold
from .recorded_data import BoolArray, FloatArray, RecordedConfig, Split, ask_routed

__all__ = ["cascade", "cascade_outcome"]


def cascade_outcome(
    gate_score: FloatArray,
    agree: FloatArray,
    small_correct: BoolArray,
    a_correct: BoolArray,
    b_correct: BoolArray,
    delta_gate: float,
    delta_a: float,
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """The cascade gate -> A -> B on precomputed outcomes.

    An input with ``gate_score >= delta_gate`` keeps the gate's label; the others ask A, whose
    answer is kept when ``agree`` (A's confidence: the gate's probability of A's label, 0 for
    an unreadable answer) is at least ``delta_a``; the rest ask B.

    Returns:
        (correct, asked A, asked B) per input.
    """
    asked_a = gate_score < delta_gate
    asked_b = asked_a & (agree < delta_a)
    correct = np.where(asked_b, b_correct, np.where(asked_a, a_correct, small_correct))
    return np.asarray(correct, dtype=bool), asked_a, asked_b


def cascade(
    dev: Split,
    test: Split,
    dev_score: FloatArray,
    test_score: FloatArray,
    cols: tuple[str, str],
    labels: tuple[str, ...],
    shunts: Mapping[str, Shunt],
    texts: Sequence[str],
    config: RecordedConfig,
    cap: float,
    delta_score: FloatArray | None = None,
) -> dict[str, Any]:
    """The cascade's thresholds chosen on dev under the cost ``cap``, measured on test.

    The gate's tier is chosen as a share of dev inputs on ``dev_score``; δ_gate is that share's
    quantile of ``delta_score`` (default ``dev_score``): the dev scores of the function that
    scores test, where ``dev_score`` is cross-fitted (the ``deferral-dev`` score).
    """
    a, b = cols
    cost_a, cost_b = config.cost(a), config.cost(b)

    def agreement(split: Split) -> FloatArray:
        # A's confidence: how probable the gate finds A's label (0 when A gave none)
        out = np.zeros(len(split.y))
        for i, (label, source) in enumerate(split.answers[a]):
            if source == "llm":
                out[i] = split.probs[i, labels.index(label)]
        return out

    agree_dev = agreement(dev)
    a_dev = dev.llm_correct(a, labels, strict=False)
    b_dev = dev.llm_correct(b, labels, strict=False)
    best: tuple[float, float, float, float] | None = None  # (accuracy, -cost, rate, δ_a)
    for r in np.linspace(0.05, 1.0, 20):
        d_gate = budget_threshold(dev_score, float(r))
        for d_a in [*np.linspace(0.0, 0.95, 20), 1.01]:
            correct, asked_a, asked_b = cascade_outcome(
                dev_score, agree_dev, dev.small_correct, a_dev, b_dev, d_gate, float(d_a)
            )
            cost = (cost_a * asked_a.mean() + cost_b * asked_b.mean()) / cost_b
            if cost > cap + 1e-12:
                continue
            key = (float(correct.mean()), -float(cost), float(r), float(d_a))
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        raise ConfigError("no cascade thresholds fit the cost cap on dev")
    dev_acc, neg_cost, rate, d_a = best
    d_gate = budget_threshold(dev_score if delta_score is None else delta_score, rate)
    # on test, through the engine: tier A for inputs under δ_gate, tier B where A is unsure
    asked_a = test_score < d_gate
    got_a = ask_routed(shunts[a], texts, test.probs, asked_a)
    agree = np.zeros(len(test.y))
    for i, (label, source) in got_a.items():
        if source == "llm":
            agree[i] = test.probs[i, labels.index(label)]
    asked_b = asked_a & (agree < d_a)
    got_b = ask_routed(shunts[b], texts, test.probs, asked_b)
    correct = test.small_correct.copy()
    for i, (label, _source) in {**got_a, **got_b}.items():
        correct[i] = label == labels[test.y[i]]
    cost = (cost_a * asked_a.mean() + cost_b * asked_b.mean()) / cost_b
    return {
        "accuracy": float(correct.mean()),
        "llm_rate": float(asked_a.mean()),
        "tiers": [a, b],
        "rate_by_tier": {a: float(asked_a.mean()), b: float(asked_b.mean())},
        "cost_vs_dearest_alone": float(cost),
        "costs": {a: cost_a, b: cost_b},
        "delta_gate": d_gate,
        "delta_agreement": d_a,
        "dev": {"accuracy": dev_acc, "cost_vs_dearest_alone": -neg_cost},
        "llm_confidence": f"the gate's probability of {a}'s label (agreement between tiers); "
        f"{a}'s answer is kept when it is >= delta_agreement, else {b} is asked",
    }
