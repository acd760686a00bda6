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
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import ConfigError
from ..gates import Gate
from ..llm.replay import ColumnReplayLLM
from ..training import Budget, calibrate
from ..training.guarantees.ranking import (
    SCORES,
    DeferralHead,
    auroc,
    budget_threshold,
    choose_score,
    max_accuracy_threshold,
    routed_accuracy,
)
from .baselines import curve, oracle_accuracy, random_accuracy
from .cascade import cascade, cascade_outcome
from .ranking import DEV_DEFERRAL, deferral_dev_scores
from .recorded_data import (
    DEFAULT_COSTS,
    NOT_REPLAYABLE,
    BoolArray,
    RecordedConfig,
    ask_routed,
    per_class_figures,
    replay_shunt,
    route_figures,
    split_answers,
)
from .recorded_report import recorded_markdown
from .tasks import TaskSpec, task_for

__all__ = [
    "DEFAULT_COSTS",
    "NOT_REPLAYABLE",
    "RecordedConfig",
    "bench_recorded",
    "cascade_outcome",
    "recorded_markdown",
]


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
    deferral_dev: bool = False,
    members: Sequence[Gate] | None = None,
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
        deferral_dev: also offer the ``deferral-dev`` score, a deferral head cross-fitted on
            dev (:func:`~datashunt.benchmark.ranking.deferral_dev_scores`); where it is chosen,
            test is scored by its refit on all of dev and δ is a quantile of the refit's dev
            scores.
        members: the gates whose probabilities ``deferral-dev`` reads (default: an
            ensemble's members, else none).
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
    shunts = {col: replay_shunt(gate, policy, task, llm) for col, llm in llms.items()}
    feats = features if callable(features) else None
    dev_s = split_answers(
        dev,
        labels,
        np.asarray(gate.predict_proba(dev.texts), dtype=np.float64),
        feats(dev.texts) if feats else None,
        shunts,
    )
    test_s = split_answers(
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
            train_s = split_answers(
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
    refit_dev = None
    if deferral_dev:
        try:
            dd, deferral["dev"] = deferral_dev_scores(
                gate,
                members,
                (dev.texts, test.texts),
                (dev_s.probs, test_s.probs),
                dev_s.small_correct,
                llm_dev,
                seed=config.seed,
            )
            dev_scores[DEV_DEFERRAL], test_scores[DEV_DEFERRAL] = dd.cross_fitted, dd.test
            refit_dev = dd.refit_dev
        except ConfigError as exc:
            deferral["dev"] = {"tried": True, "error": str(exc)}
    chosen, dev_table = choose_score(dev_scores, dev_s.small_correct, llm_dev, config.budgets)
    dev_score, test_score = dev_scores[chosen], test_scores[chosen]
    # δ: a quantile of the dev scores of the function that scores test (for deferral-dev its
    # refit on all of dev; its cross-fitted dev scores give the dev accuracy and the rate)
    delta_score = refit_dev if chosen == DEV_DEFERRAL and refit_dev is not None else dev_score

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
        acc, rate = routed_accuracy(dev_score, dev_s.small_correct, llm_dev, d)
        deltas[f"b{round(100 * b)}"] = (budget_threshold(delta_score, b), acc, rate)
    d, acc, rate = max_accuracy_threshold(dev_score, dev_s.small_correct, llm_dev)
    deltas["max"] = (
        d if delta_score is dev_score else budget_threshold(delta_score, rate),
        acc,
        rate,
    )
    per_class_routes: dict[str, BoolArray] = {}
    per_class_correct: dict[str, BoolArray] = {}
    for tag, (d, dev_acc, dev_rate) in deltas.items():
        routed = test_score < d
        got = ask_routed(shunts[primary], test.texts, test_s.probs, routed)
        correct, fallbacks = route_figures(routed, got, test_s, labels)
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
        methods[f"oracle-{tag}"] = {
            "accuracy": oracle_accuracy(k, small, llm_test),
            "llm_rate": k / n,
        }
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
        out["per_class"] = per_class_figures(
            test_s, labels, llms, per_class_routes, per_class_correct
        )
    if len(llms) >= 2:
        cols = sorted(list(llms)[:2], key=config.cost)  # cheaper tier first
        out["cascade"] = {}
        for cap in config.cascade_max_costs:
            tag = f"c{round(100 * cap)}"
            c = cascade(
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
                delta_score,
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
