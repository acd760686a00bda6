"""The benchmark against recorded answers of real large models (``mr``, ``isear``, your own file).

The LLM is a :class:`~datashunt.llm.ColumnReplayLLM`: its answer for an input is the label
recorded in a column of the data file; an empty cell is an unreadable answer (the shunt falls
back to the gate, the LLM alone counts it wrong). Every answer is asked through the engine
(:meth:`Shunt.ask`, unrecorded) with the un-pruned prompt, the only one a recording can replay:
soft and hard pruning and DS+ change the prompt and are reported as not replayable.

Per data set: the gate alone, each recorded LLM alone, the shunt at δ chosen on dev for each
LLM-call budget and at the δ that maximises dev accuracy, random and oracle routers at the same
rates, per-class accuracy, the accuracy-vs-call-rate curve and, with two or more recorded LLMs,
a cascade (gate -> cheaper LLM -> dearer LLM) with one threshold per tier.
"""

from __future__ import annotations

import time
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
from ..training import Budget, calibrate
from ..training.ranking import (
    SCORES,
    DeferralHead,
    auroc,
    budget_threshold,
    choose_score,
    max_accuracy_threshold,
)
from .baselines import curve, random_accuracy
from .tasks import TaskSpec, task_for

__all__ = [
    "DEFAULT_COSTS",
    "NOT_REPLAYABLE",
    "RecordedConfig",
    "bench_recorded",
    "cascade_outcome",
    "recorded_markdown",
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
class _Split:
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


def _shunt(gate: Gate, policy: ShuntPolicy, task: TaskSpec, llm: ColumnReplayLLM) -> Shunt:
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


def _ask(
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


def _split(
    data: Dataset,
    labels: tuple[str, ...],
    probs: FloatArray,
    features: FloatArray | None,
    shunts: Mapping[str, Shunt],
) -> _Split:
    everything = np.ones(len(data), dtype=bool)
    answers = {}
    for col, s in shunts.items():
        got = _ask(s, data.texts, probs, everything)
        answers[col] = [got[i] for i in range(len(data))]
    y = np.array([labels.index(e.label) for e in data.examples])
    return _Split(y, probs, features, answers)


def _route_figures(
    routed: BoolArray, got: Mapping[int, tuple[str, str]], split: _Split, labels: Sequence[str]
) -> tuple[BoolArray, int]:
    """Per-input correctness of a shunt that asked ``got`` (fallbacks take the gate's label)."""
    correct = split.small_correct.copy()
    fallbacks = 0
    for i, (label, source) in got.items():
        correct[i] = label == labels[split.y[i]]
        fallbacks += source != "llm"
    return correct, fallbacks


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


def _cascade(
    dev: _Split,
    test: _Split,
    dev_score: FloatArray,
    test_score: FloatArray,
    cols: tuple[str, str],
    labels: tuple[str, ...],
    shunts: Mapping[str, Shunt],
    texts: Sequence[str],
    config: RecordedConfig,
    cap: float,
) -> dict[str, Any]:
    a, b = cols
    cost_a, cost_b = config.cost(a), config.cost(b)

    def agreement(split: _Split) -> FloatArray:
        # A's confidence: how probable the gate finds A's label (0 when A gave none)
        out = np.zeros(len(split.y))
        for i, (label, source) in enumerate(split.answers[a]):
            if source == "llm":
                out[i] = split.probs[i, labels.index(label)]
        return out

    agree_dev = agreement(dev)
    a_dev = dev.llm_correct(a, labels, strict=False)
    b_dev = dev.llm_correct(b, labels, strict=False)
    best: tuple[float, float, float, float] | None = None  # (accuracy, -cost, δ_gate, δ_a)
    for r in np.linspace(0.05, 1.0, 20):
        d_gate = budget_threshold(dev_score, float(r))
        for d_a in [*np.linspace(0.0, 0.95, 20), 1.01]:
            correct, asked_a, asked_b = cascade_outcome(
                dev_score, agree_dev, dev.small_correct, a_dev, b_dev, d_gate, float(d_a)
            )
            cost = (cost_a * asked_a.mean() + cost_b * asked_b.mean()) / cost_b
            if cost > cap + 1e-12:
                continue
            key = (float(correct.mean()), -float(cost), d_gate, float(d_a))
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        raise ConfigError("no cascade thresholds fit the cost cap on dev")
    dev_acc, neg_cost, d_gate, d_a = best
    # on test, through the engine: tier A for inputs under δ_gate, tier B where A is unsure
    asked_a = test_score < d_gate
    got_a = _ask(shunts[a], texts, test.probs, asked_a)
    agree = np.zeros(len(test.y))
    for i, (label, source) in got_a.items():
        if source == "llm":
            agree[i] = test.probs[i, labels.index(label)]
    asked_b = asked_a & (agree < d_a)
    got_b = _ask(shunts[b], texts, test.probs, asked_b)
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


def bench_recorded(
    name: str,
    gate: Gate,
    llms: Mapping[str, ColumnReplayLLM],
    dev: Dataset,
    test: Dataset,
    *,
    config: RecordedConfig | None = None,
    task: TaskSpec | None = None,
    train: Dataset | None = None,
    features: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every replayable method on one data set with recorded LLM answers: a JSON-ready dict.

    Args:
        name: the data set's name (its prompt from :data:`TASKS`, else the generic one).
        gate: the small model (its temperature is fitted on ``dev``).
        llms: column -> its replay, in order of preference: the first is "the LLM".
        dev: labelled data to choose the temperature, the confidence score and δ on.
        test: labelled data every figure is measured on.
        config: budgets, costs, cascade cap.
        task: the prompt (only its un-pruned form is used, as the answers were recorded).
        train: training data with recorded answers, for the learned deferral head.
        features: ``texts -> (n, d) array`` of input features for the deferral head (e.g. a
            frozen sentence embedding); ``None``: the head sees the gate's probabilities only.
        progress: print what is done.

    Raises:
        ConfigError: no recorded LLM, or labels the gate does not know.
    """
    config = config or RecordedConfig()
    task = task or task_for(name)
    if not llms:
        raise ConfigError("bench_recorded needs at least one recorded answer column")
    labels = tuple(gate.labels)
    for data in (dev, test):
        unknown = sorted({e.label for e in data.examples} - set(labels))
        if unknown:
            raise ConfigError(f"{name} has labels {unknown} the gate does not know: {labels}")
    t0 = time.perf_counter()
    report = calibrate(gate, dev, Budget(config.budgets[0]))  # fits the temperature on dev
    policy = report.policy
    shunts = {col: _shunt(gate, policy, task, llm) for col, llm in llms.items()}
    feats = features if callable(features) else None
    dev_s = _split(
        dev,
        labels,
        np.asarray(gate.predict_proba(dev.texts), dtype=np.float64),
        feats(dev.texts) if feats else None,
        shunts,
    )
    test_s = _split(
        test,
        labels,
        np.asarray(gate.predict_proba(test.texts), dtype=np.float64),
        feats(test.texts) if feats else None,
        shunts,
    )
    primary = next(iter(llms))
    # the routers and the curve use the shunt's view: an unreadable answer falls back to the gate
    llm_dev = dev_s.llm_correct(primary, labels, strict=False)
    llm_test = test_s.llm_correct(primary, labels, strict=False)

    # ---- the ranking score, chosen on dev -------------------------------------------------
    dev_scores = {k: f(dev_s.probs) for k, f in SCORES.items()}
    test_scores = {k: f(test_s.probs) for k, f in SCORES.items()}
    deferral: dict[str, Any] = {"tried": False}
    if train is not None:
        try:
            train_s = _split(
                train,
                labels,
                np.asarray(gate.predict_proba(train.texts), dtype=np.float64),
                feats(train.texts) if feats else None,
                {primary: shunts[primary]},
            )
            head = DeferralHead(seed=config.seed).fit(
                train_s.features,
                train_s.probs,
                train_s.small_correct,
                train_s.llm_correct(primary, labels, strict=False),
            )
            dev_scores["deferral"] = head.score(dev_s.features, dev_s.probs)
            test_scores["deferral"] = head.score(test_s.features, test_s.probs)
            deferral = {"tried": True, "n_train": len(train)}
        except ConfigError as exc:
            deferral = {"tried": True, "error": str(exc)}
    chosen, dev_table = choose_score(dev_scores, dev_s.small_correct, llm_dev, config.budgets)
    dev_score, test_score = dev_scores[chosen], test_scores[chosen]

    # ---- every method on test ---------------------------------------------------------------
    n = len(test)
    small = test_s.small_correct
    methods: dict[str, dict[str, Any]] = {
        "small": {
            "accuracy": float(small.mean()),
            "llm_rate": 0.0,
            "auroc_gate_right": auroc(test_score, small),
        },
    }
    for col in llms:
        strict = test_s.llm_correct(col, labels, strict=True)
        key = "llm" if col == primary else f"llm:{col}"
        methods[key] = {
            "accuracy": float(strict.mean()),
            "llm_rate": 1.0,
            "unreadable": sum(s != "llm" for _, s in test_s.answers[col]),
            "column": col,
            "dev_accuracy": float(dev_s.llm_correct(col, labels, strict=True).mean()),
        }
    deltas: dict[str, tuple[float, float, float]] = {}
    for b in config.budgets:
        d = budget_threshold(dev_score, b)
        acc, rate = _dev_figures(dev_score, dev_s.small_correct, llm_dev, d)
        deltas[f"b{round(100 * b)}"] = (d, acc, rate)
    deltas["max"] = max_accuracy_threshold(dev_score, dev_s.small_correct, llm_dev)
    per_class_routes: dict[str, BoolArray] = {}
    per_class_correct: dict[str, BoolArray] = {}
    for tag, (d, dev_acc, dev_rate) in deltas.items():
        routed = test_score < d
        got = _ask(shunts[primary], test.texts, test_s.probs, routed)
        correct, fallbacks = _route_figures(routed, got, test_s, labels)
        k = int(routed.sum())
        methods[f"ds-{tag}"] = {
            "accuracy": float(correct.mean()),
            "llm_rate": k / n,
            "llm_calls": k,
            "fallbacks": fallbacks,
            "delta": d,
            "dev_accuracy": dev_acc,
            "dev_llm_rate": dev_rate,
        }
        methods[f"random-{tag}"] = {
            "accuracy": random_accuracy(k / n, float(small.mean()), float(llm_test.mean())),
            "llm_rate": k / n,
        }
        methods[f"oracle-{tag}"] = {"accuracy": _oracle(k, small, llm_test), "llm_rate": k / n}
        per_class_routes[tag], per_class_correct[tag] = routed, correct
    out: dict[str, Any] = {
        "n_test": n,
        "n_dev": len(dev),
        "labels": list(labels),
        "llm_columns": list(llms),
        "primary": primary,
        "temperature": policy.temperature,
        "score": {
            "chosen": chosen,
            "dev": dev_table,
            "test_auroc_gate_right": {k: auroc(v, small) for k, v in test_scores.items()},
            "deferral": deferral,
        },
        "methods": methods,
        "not_replayable": dict(NOT_REPLAYABLE),
        "curve": curve(test_score, small, llm_test, config.curve_points),
    }
    if len(labels) > 2:
        out["per_class"] = _per_class(test_s, labels, llms, per_class_routes, per_class_correct)
    if len(llms) >= 2:
        cols = sorted(list(llms)[:2], key=config.cost)  # cheaper tier first
        out["cascade"] = {}
        for cap in config.cascade_max_costs:
            tag = f"c{round(100 * cap)}"
            c = _cascade(
                dev_s,
                test_s,
                dev_score,
                test_score,
                (cols[0], cols[1]),
                labels,
                shunts,
                test.texts,
                config,
                cap,
            )
            c["max_cost"] = cap
            out["cascade"][tag] = c
            methods[f"cascade-{tag}"] = {
                "accuracy": c["accuracy"],
                "llm_rate": c["llm_rate"],
                "cost_vs_dearest_alone": c["cost_vs_dearest_alone"],
            }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if progress:
        print(recorded_markdown(name, out))
    return out


def _dev_figures(
    score: FloatArray, small: BoolArray, llm: BoolArray, d: float
) -> tuple[float, float]:
    routed = score < d
    return float(np.where(routed, llm, small).mean()), float(routed.mean())


def _oracle(k: int, small: BoolArray, llm: BoolArray) -> float:
    helps = int(np.sum(~small & llm))
    neutral = int(np.sum(small == llm))
    return float(small.mean() + (min(k, helps) - max(0, k - helps - neutral)) / len(small))


def _per_class(
    split: _Split,
    labels: tuple[str, ...],
    llms: Mapping[str, ColumnReplayLLM],
    routes: Mapping[str, BoolArray],
    corrects: Mapping[str, BoolArray],
) -> dict[str, Any]:
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


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def recorded_markdown(name: str, res: Mapping[str, Any]) -> str:
    """One data set's table (and per-class table) as markdown."""
    m = res["methods"]
    lines = [
        f"### {name}: {res['n_test']} test inputs, LLM = recorded `{res['primary']}`, "
        f"confidence score `{res['score']['chosen']}` (chosen on {res['n_dev']} dev)",
        "",
        "| method | accuracy % | LLM calls % | δ (from dev) | dev accuracy % |",
        "|---|---:|---:|---:|---:|",
    ]
    auc = m["small"].get("auroc_gate_right")
    lines.append(
        f"| gate alone (AUROC of its confidence {auc:.3f}) | "
        f"{_pct(m['small']['accuracy'])} | 0.0 | | |"
    )
    for key, v in m.items():
        if key.startswith("llm"):
            lines.append(
                f"| `{v['column']}` alone ({v['unreadable']} unreadable) | "
                f"{_pct(v['accuracy'])} | 100.0 | | {_pct(v['dev_accuracy'])} |"
            )
    for key, v in m.items():
        if key.startswith("ds-"):
            tag = key[3:]
            what = "max dev accuracy" if tag == "max" else f"budget {tag[1:]} %"
            lines.append(
                f"| Data Shunt, {what} | {_pct(v['accuracy'])} | {_pct(v['llm_rate'])} | "
                f"{v['delta']:.4f} | {_pct(v['dev_accuracy'])} |"
            )
            lines.append(
                f"| random router, same rate | {_pct(m['random-' + tag]['accuracy'])} "
                f"| {_pct(v['llm_rate'])} | | |"
            )
            lines.append(
                f"| oracle router, same rate | {_pct(m['oracle-' + tag]['accuracy'])} "
                f"| {_pct(v['llm_rate'])} | | |"
            )
    for c in (res.get("cascade") or {}).values():
        a, b = c["tiers"]
        lines.append(
            f"| cascade gate → `{a}` → `{b}`, cost ≤ {c['max_cost']:.2f} on dev "
            f"({_pct(c['rate_by_tier'][a])} % / {_pct(c['rate_by_tier'][b])} % calls, cost "
            f"{c['cost_vs_dearest_alone']:.2f} of `{b}` alone) | {_pct(c['accuracy'])} | "
            f"{_pct(c['llm_rate'])} | {c['delta_gate']:.4f} / {c['delta_agreement']:.2f} | "
            f"{_pct(c['dev']['accuracy'])} |"
        )
    for key in NOT_REPLAYABLE:
        lines.append(
            f"| {key}: not replayable (prompt differs from the recorded one) | – | – | | |"
        )
    per_class = res.get("per_class")
    if per_class:
        tags = [k[3:] for k in m if k.startswith("ds-")]
        cols = res["llm_columns"]
        lines += [
            "",
            "Accuracy % per class (LLM calls % in brackets):",
            "",
            "| class | n | gate | "
            + " | ".join(f"`{c}`" for c in cols)
            + " | "
            + " | ".join(f"ds-{t}" for t in tags)
            + " |",
            "|---|---:|---:|" + "---:|" * (len(cols) + len(tags)),
        ]
        for lab, row in per_class.items():
            cells = [_pct(row["small"])] + [_pct(row[c]) for c in cols]
            cells += [
                f"{_pct(row['ds-' + t])} ({_pct(row['ds-' + t + '-llm_rate'])})" for t in tags
            ]
            lines.append(f"| {lab} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
