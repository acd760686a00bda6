"""The recorded-answers benchmark's data: a split's gate outputs and each recorded LLM's answers,
asked through the engine (:meth:`Shunt.ask`, unrecorded) with the un-pruned prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data import Dataset
from ..engine import Shunt
from ..errors import ConfigError
from ..gates import Gate
from ..llm import RetryPolicy
from ..llm.replay import ColumnReplayLLM
from ..policy import ShuntPolicy
from .tasks import TaskSpec

__all__ = [
    "DEFAULT_COSTS",
    "NOT_REPLAYABLE",
    "BoolArray",
    "FloatArray",
    "RecordedConfig",
    "Split",
    "ask_routed",
    "per_class_figures",
    "replay_shunt",
    "route_figures",
    "split_answers",
]

#: The methods whose prompt differs from the recorded one, and why they cannot be replayed.
NOT_REPLAYABLE: Mapping[str, str] = {
    "ds-soft": "soft pruning writes the gate's probabilities into the prompt: the recorded "
    "answers were given to the plain prompt",
    "ds-hard": "hard pruning removes candidate labels from the prompt: not what was recorded",
    "ds-plus": "DS+ prunes and shortens the input: not what was recorded",
}

#: Relative cost of one call per recorded column (gpt-3.5-turbo = 1). Llama-2-70B-chat at
#: $0.90 per million tokens against gpt-3.5-turbo-1106 at $1.00 in / $2.00 out per million
#: (list prices, late 2023); a short classification answer makes the input price dominate.
DEFAULT_COSTS: Mapping[str, float] = {
    "llm_label": 1.0,
    "gpt35_label": 1.0,
    "llama2_70b_label": 0.9,
}

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True)
class RecordedConfig:
    """What :func:`bench_recorded` measures.

    Attributes:
        budgets: LLM-call budgets; δ is chosen on dev for each (plus the dev-accuracy max).
        costs: relative cost of one call per column (default :data:`DEFAULT_COSTS`, else 1).
        cascade_max_costs: the cascade's thresholds are chosen on dev for the best accuracy at
            no more than each of these shares of the dearest LLM's cost when asked about
            everything (one cascade row per cap).
        curve_points: call rates on the curve.
        seed: the deferral head's seed.
    """

    budgets: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)
    costs: Mapping[str, float] = field(default_factory=dict)
    cascade_max_costs: tuple[float, ...] = (0.5, 0.75, 0.9)
    curve_points: int = 41
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.budgets or not all(0.0 < b <= 1.0 for b in self.budgets):
            raise ConfigError(f"budgets must be in (0, 1], got {list(self.budgets)}")
        if not all(0.0 < c <= 1.0 for c in self.cascade_max_costs):
            raise ConfigError(
                f"cascade_max_costs must be in (0, 1], got {list(self.cascade_max_costs)}"
            )

    def cost(self, column: str) -> float:
        """The relative cost of one call to the model recorded in ``column``."""
        return float(self.costs.get(column, DEFAULT_COSTS.get(column, 1.0)))


@dataclass(frozen=True)
class Split:
    """One split's gate outputs and each recorded LLM's answers (through the engine)."""

    y: np.ndarray[Any, Any]
    probs: FloatArray
    features: FloatArray | None
    answers: Mapping[str, list[tuple[str, str]]]  # column -> (label, source) per input

    @property
    def small_correct(self) -> BoolArray:
        return np.asarray(self.probs.argmax(axis=1) == self.y)

    def llm_correct(self, column: str, labels: Sequence[str], *, strict: bool) -> BoolArray:
        """Whether the LLM's answer is right; ``strict``: an unreadable one is wrong, else the
        gate's label stands in (as in the shunt)."""
        small = self.small_correct
        out = []
        for i, (label, source) in enumerate(self.answers[column]):
            if source == "llm":
                out.append(label == labels[self.y[i]])
            else:
                out.append(False if strict else bool(small[i]))
        return np.array(out, dtype=bool)


def replay_shunt(gate: Gate, policy: ShuntPolicy, task: TaskSpec, llm: ColumnReplayLLM) -> Shunt:
    return Shunt(
        gate,
        policy,
        prompt_mode="none",
        template=task.template,
        synonyms=task.synonyms,
        noun=task.noun,
        llm=llm,
        retry=RetryPolicy(attempts=1),  # a replay is deterministic: nothing to retry
    )


def ask_routed(
    shunt: Shunt, texts: Sequence[str], probs: FloatArray, routed: BoolArray
) -> dict[int, tuple[str, str]]:
    """Ask the shunt's LLM, through the engine, about the ``routed`` inputs."""
    labels = tuple(shunt.policy.labels)
    decisions = []
    for row, r in zip(probs, routed, strict=True):
        d = shunt.decision_from_probs(row)
        decisions.append(replace(d, route="llm" if r else "small", candidates=labels))
    requests = shunt.prepare(texts, decisions)
    index = [i for i, r in enumerate(routed) if r]
    out: dict[int, tuple[str, str]] = {}
    for i, req in zip(index, requests, strict=True):
        res = shunt.ask(req, record=False)
        out[i] = (res.label, res.source)
    return out


def split_answers(
    data: Dataset,
    labels: tuple[str, ...],
    probs: FloatArray,
    features: FloatArray | None,
    shunts: Mapping[str, Shunt],
) -> Split:
    everything = np.ones(len(data), dtype=bool)
    answers = {}
    for col, s in shunts.items():
        got = ask_routed(s, data.texts, probs, everything)
        answers[col] = [got[i] for i in range(len(data))]
    y = np.array([labels.index(e.label) for e in data.examples])
    return Split(y, probs, features, answers)


def route_figures(
    routed: BoolArray, got: Mapping[int, tuple[str, str]], split: Split, labels: Sequence[str]
) -> tuple[BoolArray, int]:
    """Per-input correctness of a shunt that asked ``got`` (fallbacks take the gate's label)."""
    correct = split.small_correct.copy()
    fallbacks = 0
    for i, (label, source) in got.items():
        correct[i] = label == labels[split.y[i]]
        fallbacks += source != "llm"
    return correct, fallbacks


def per_class_figures(
    split: Split,
    labels: tuple[str, ...],
    llms: Mapping[str, ColumnReplayLLM],
    routes: Mapping[str, BoolArray],
    corrects: Mapping[str, BoolArray],
) -> dict[str, Any]:
    """Per class: the gate's, each LLM's (strict) and each routing's accuracy and LLM share."""
    out: dict[str, Any] = {}
    small = split.small_correct
    for c, lab in enumerate(labels):
        idx = split.y == c
        row: dict[str, Any] = {"n": int(idx.sum()), "small": float(small[idx].mean())}
        for col in llms:
            row[col] = float(split.llm_correct(col, labels, strict=True)[idx].mean())
        for tag in routes:
            row[f"ds-{tag}"] = float(corrects[tag][idx].mean())
            row[f"ds-{tag}-llm_rate"] = float(routes[tag][idx].mean())
        out[lab] = row
    return out
