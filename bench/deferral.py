"""A learned deferral score against the gate's confidence, on recorded LLM answers (issue 18).

The shunt routes the inputs the gate is least sure of (lowest maximum probability) to the LLM.
A learned deferral score instead ranks inputs by a small model's estimate of the LLM's *benefit*
on them, ``1[LLM right] - 1[gate right]`` (RouteLLM and Gatekeeper learn routers this way),
from the gate's probabilities (sorted, margin, entropy, predicted class), the other gates'
probabilities and agreement, the text's length and, optionally, a low-dimensional projection of
the fine-tuned gate's features.

The features, the folds and the ``lr-gain`` head are the library's
(:mod:`datashunt.training.guarantees.deferral`), which ``datashunt bench --deferral`` offers as the
``deferral-dev`` score. The gates were trained on the train split, so their train probabilities
are over-confident; the head is therefore learned on **dev** with K-fold cross-fitting (fit on
K-1 folds, score the K-th; repeated over several fold seeds) and compared, on the same dev
inputs, with the maximum probability and the margin at each LLM-call budget, with a paired
bootstrap of the difference.
Only where a head beats the confidence on dev is it fitted on all of dev and measured on test,
at δ chosen on dev, beside the confidence at its own dev δ (the figures of
``bench/results/recorded*.md``).

    .venv/bin/python -m bench.deferral_cache      # gate outputs on dev/test, once (~2 min)
    .venv/bin/python -m bench.deferral            # the tables, deferral.{json,md}

An unreadable (empty) recorded answer falls back to the gate's label, as in the shunt.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a small head: no need for every core

import numpy as np

from bench.common import csv_list, pct
from bench.deferral_cache import GATES, cache_path, texts_digest
from datashunt.benchmark.baselines import route_lowest
from datashunt.gates import softmax
from datashunt.gates.ensemble import mix_probabilities
from datashunt.training.fitting.metrics import fit_temperature
from datashunt.training.guarantees.deferral import (
    BenefitHead,
    confidence_features,
    deferral_features,
    gain,
)
from datashunt.training.guarantees.deferral import stratified_folds as folds
from datashunt.training.guarantees.ranking import auroc, budget_threshold

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

#: The gate each routing figure of ``bench/results/recorded*.md`` uses: member -> weight
#: (a ``prob`` mixture of the members' dev-temperature-scaled probabilities).
BASES: Mapping[str, Mapping[str, Mapping[str, float]]] = {
    "isear": {
        "emb": {"emb": 1.0},  # recorded.md (gate alone 61.3 %)
        "mix": {"ft": 0.7, "emb": 0.3},  # recorded.isear.md (gate alone 64.8 %)
    },
    "mr": {"mix": {"ft1": 0.4, "ft2": 0.6}},  # recorded.md (gate alone 83.7 %)
}
LLM_COLUMN: Mapping[str, str] = {"isear": "gpt35_label", "mr": "llm_label"}
#: The fine-tuned gate whose features a head may project (``+pca`` feature sets).
FEATURE_GATE: Mapping[str, str] = {"isear": "ft", "mr": "ft1"}
BUDGETS = (0.2, 0.3, 0.35, 0.4, 0.5)


# ---- pure functions (tests/core/test_deferral_bench.py) ------------------------------------


def routed_correct(
    priority: FloatArray, small: BoolArray, llm: BoolArray, budget: float
) -> BoolArray:
    """Per-input correctness when the ``floor(budget * n)`` inputs of highest ``priority`` go to
    the LLM (ties: the earlier input first; :func:`~datashunt.benchmark.baselines.route_lowest`
    of the negated priority)."""
    k = int(np.floor(budget * len(priority) + 1e-9))
    return route_lowest(-np.asarray(priority, dtype=np.float64), small, llm, k)


def paired_bootstrap(diff: FloatArray, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of a per-input difference, its bootstrap standard error and 95 % interval."""
    d = np.asarray(diff, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {
        "mean": float(d.mean()),
        "se": float(means.std(ddof=1)),
        "lo": float(lo),
        "hi": float(hi),
    }


# ---- the heads --------------------------------------------------------------------------


@dataclass
class Head:
    """A deferral head: ``fit(x, small, llm, probs)`` then ``priority(x, probs)`` (higher =
    send to the LLM first)."""

    kind: str
    c: float = 0.1
    model: Any = None

    def fit(self, x: FloatArray, small: BoolArray, llm: BoolArray, probs: FloatArray) -> Head:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        g = gain(small, llm)
        if self.kind == "lr-gain":  # multinomial on {-1, 0, +1}: the library's head
            self.model = BenefitHead(c=self.c).fit(x, small, llm)
        elif self.kind == "lr-two":  # P(LLM right) - P(gate right), two binary heads
            a = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000))
            b = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000))
            self.model = (a.fit(x, llm.astype(int)), b.fit(x, small.astype(int)))
        elif self.kind == "lr-win":  # P(LLM right and gate wrong)
            self.model = make_pipeline(
                StandardScaler(), LogisticRegression(C=self.c, max_iter=2000)
            )
            self.model.fit(x, (g == 1).astype(int))
        elif self.kind == "hgb-gain":  # small gradient boosting on the benefit
            self.model = HistGradientBoostingRegressor(
                max_depth=3,
                max_iter=150,
                learning_rate=0.04,
                min_samples_leaf=40,
                l2_regularization=1.0,
                random_state=0,
            ).fit(x, g.astype(float))
        elif self.kind == "class-llm":  # P(LLM right | predicted class) - max probability
            pred = probs.argmax(axis=1)
            k = probs.shape[1]
            prior = float(llm.mean())
            self.model = np.array(
                [(llm[pred == c].sum() + 10 * prior) / ((pred == c).sum() + 10) for c in range(k)]
            )
        else:
            raise ValueError(f"unknown head {self.kind!r}")
        return self

    def priority(self, x: FloatArray, probs: FloatArray) -> FloatArray:
        if self.kind == "lr-gain":  # P(+1) - P(-1)
            return -np.asarray(self.model.score(x), dtype=np.float64)
        if self.kind == "lr-two":
            a, b = self.model
            return np.asarray(a.predict_proba(x)[:, 1] - b.predict_proba(x)[:, 1], dtype=np.float64)
        if self.kind == "lr-win":
            return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)
        if self.kind == "hgb-gain":
            return np.asarray(self.model.predict(x), dtype=np.float64)
        if self.kind == "class-llm":
            return np.asarray(
                self.model[probs.argmax(axis=1)] - probs.max(axis=1), dtype=np.float64
            )
        raise ValueError(self.kind)


#: head name -> (head kind, C, feature set)
HEADS: Mapping[str, tuple[str, float, str]] = {
    "class-llm": ("class-llm", 0.0, "conf"),
    "lr-gain/conf": ("lr-gain", 0.1, "conf"),
    "lr-gain/all": ("lr-gain", 0.1, "all"),
    "lr-gain/all+pca": ("lr-gain", 0.1, "all+pca"),
    "lr-two/all": ("lr-two", 0.1, "all"),
    "lr-two/all+pca": ("lr-two", 0.1, "all+pca"),
    "lr-win/all": ("lr-win", 0.1, "all"),
    "hgb-gain/all": ("hgb-gain", 0.0, "all"),
}


# ---- data --------------------------------------------------------------------------------


@dataclass
class Split:
    y: np.ndarray[Any, Any]
    probs: FloatArray  # the base gate's (as the bench routes)
    members: dict[str, FloatArray]  # every cached gate's, dev-temperature-scaled
    feats: FloatArray | None  # the feature gate's representation
    llm: BoolArray  # LLM right (an unreadable answer: the base gate's correctness)
    readable: BoolArray
    n_words: FloatArray

    @property
    def small(self) -> BoolArray:
        return np.asarray(self.probs.argmax(axis=1) == self.y)


def load_splits(
    name: str, base: Mapping[str, float], cache_dir: Path
) -> tuple[Split, Split, dict[str, Any]]:
    """Dev and test with the base gate's probabilities built as the bench builds them: each
    member's temperature fitted on dev, a ``prob`` mixture, then the mixture's temperature."""
    from datashunt.data import read_dataset
    from datashunt.llm.replay import ColumnReplayLLM

    npz = {g: np.load(cache_path(cache_dir, name, g)) for g in GATES[name]}
    labels = tuple(str(v) for v in next(iter(npz.values()))["labels"])
    llm = ColumnReplayLLM.from_data(name, LLM_COLUMN[name])
    raw: dict[str, dict[str, Any]] = {}
    for split in ("dev", "test"):
        data = read_dataset(name, split=split, labels=labels)
        for g, z in npz.items():
            if str(z[f"digest_{split}"]) != texts_digest(list(data.texts)):
                raise SystemExit(
                    f"{cache_path(cache_dir, name, g)} was made from other {split} rows"
                )
        answers = [llm.recorded(t) or "" for t in data.texts]
        raw[split] = {
            "y": np.array([labels.index(e.label) for e in data.examples]),
            "answers": answers,
            "n_words": np.array([len(t.split()) for t in data.texts], dtype=np.float64),
        }
    temps = {
        g: fit_temperature(np.asarray(z["logp_dev"], dtype=np.float64), raw["dev"]["y"])
        for g, z in npz.items()
    }
    member = {
        s: {g: softmax(z[f"logp_{s}"], temps[g]) for g, z in npz.items()} for s in ("dev", "test")
    }
    mixed = {
        s: mix_probabilities([member[s][g] for g in base], list(base.values()), "prob")
        for s in ("dev", "test")
    }
    t_mix = fit_temperature(mixed["dev"], raw["dev"]["y"])
    out = []
    for s in ("dev", "test"):
        probs = softmax(mixed[s], t_mix)
        y = raw[s]["y"]
        small = probs.argmax(axis=1) == y
        ans = raw[s]["answers"]
        readable = np.array([a in labels for a in ans])
        right = np.array([a == labels[k] for a, k in zip(ans, y, strict=True)])
        fg = FEATURE_GATE[name]
        out.append(
            Split(
                y=y,
                probs=probs,
                members=member[s],
                feats=np.asarray(npz[fg][f"feats_{s}"], dtype=np.float64)
                if f"feats_{s}" in npz[fg]
                else None,
                llm=np.where(readable, right, small),
                readable=readable,
                n_words=raw[s]["n_words"],
            )
        )
    info = {"labels": list(labels), "member_temperatures": temps, "temperature": t_mix}
    return out[0], out[1], info


def design(
    split: Split, feature_set: str, base: Mapping[str, float], pca: Any = None
) -> FloatArray:
    """The head's input for one feature set (``conf``, ``all``, ``all+pca``); ``all`` is
    :func:`datashunt.training.guarantees.deferral.deferral_features` over every cached gate (the
    ``deferral-dev`` score of ``datashunt bench --deferral`` with ``--gate A+B``)."""
    if feature_set in ("all", "all+pca"):
        others = list(split.members.values())  # every gate, mixture members too
        parts = [deferral_features(split.probs, others, split.n_words)]
    else:
        parts = [confidence_features(split.probs)]
    if feature_set == "all+pca" and pca is not None and split.feats is not None:
        parts.append(pca.transform(split.feats))
    return np.concatenate(parts, axis=1)


def head_priority(
    name: str, train: Split, score: Split, base: Mapping[str, float], n_pca: int
) -> Callable[[], FloatArray]:
    kind, c, fs = HEADS[name]

    def run() -> FloatArray:
        pca = None
        if fs == "all+pca" and train.feats is not None:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=n_pca, random_state=0).fit(train.feats)
        h = Head(kind, c=c).fit(design(train, fs, base, pca), train.small, train.llm, train.probs)
        return h.priority(design(score, fs, base, pca), score.probs)

    return run


def subset(s: Split, idx: np.ndarray[Any, Any]) -> Split:
    return Split(
        y=s.y[idx],
        probs=s.probs[idx],
        members={g: p[idx] for g, p in s.members.items()},
        feats=None if s.feats is None else s.feats[idx],
        llm=s.llm[idx],
        readable=s.readable[idx],
        n_words=s.n_words[idx],
    )


# ---- the experiment ----------------------------------------------------------------------


def cross_fitted(
    dev: Split, base: Mapping[str, float], heads: Sequence[str], k: int, repeats: int, n_pca: int
) -> dict[str, list[FloatArray]]:
    """Per head, one cross-fitted dev priority per repeat (folds stratified by the benefit)."""
    out: dict[str, list[FloatArray]] = {h: [] for h in heads}
    strata = gain(dev.small, dev.llm) * 100 + dev.probs.argmax(axis=1)
    for r in range(repeats):
        fs = folds(strata, k, seed=r)
        for h in heads:
            pr = np.empty(len(dev.y))
            for f in fs:
                rest = np.setdiff1d(np.arange(len(dev.y)), f)
                pr[f] = head_priority(h, subset(dev, rest), subset(dev, f), base, n_pca)()
            out[h].append(pr)
    return out


def dev_table(
    dev: Split, priorities: Mapping[str, list[FloatArray]], budgets: Sequence[float]
) -> dict[str, Any]:
    """Per ranking: dev accuracy at each budget (mean over repeats), its paired bootstrap
    difference with the maximum probability, and the mean over budgets."""
    small, llm = dev.small, dev.llm
    ref = {b: routed_correct(-dev.probs.max(axis=1), small, llm, b) for b in budgets}
    table: dict[str, Any] = {}
    for name, prs in priorities.items():
        row: dict[str, Any] = {"budgets": {}}
        diffs = []
        for b in budgets:
            c = np.mean([routed_correct(p, small, llm, b) for p in prs], axis=0)
            d = c - ref[b]
            diffs.append(d)
            row["budgets"][f"{b:g}"] = {
                "accuracy": float(c.mean()),
                "vs_max": paired_bootstrap(d, seed=1),
                "per_repeat": [float(routed_correct(p, small, llm, b).mean()) for p in prs],
            }
        row["mean_accuracy"] = float(np.mean([v["accuracy"] for v in row["budgets"].values()]))
        row["mean_vs_max"] = paired_bootstrap(np.mean(diffs, axis=0), seed=2)
        g = gain(small, llm)
        row["auroc_llm_better"] = float(np.mean([auroc(p, g == 1) for p in prs]))
        row["auroc_gate_right"] = float(np.mean([auroc(-p, small) for p in prs]))
        table[name] = row
    return table


def test_at_dev_delta(
    dev_priority: FloatArray, test_priority: FloatArray, test: Split, budgets: Sequence[float]
) -> dict[str, Any]:
    """Route test inputs whose priority exceeds the dev threshold of each budget (the bench's
    δ from dev: the k-th highest dev priority; ties stay with the gate)."""
    out = {}
    for b in budgets:
        c, routed, thr = routed_at_dev_delta(dev_priority, test_priority, test.small, test.llm, b)
        out[f"{b:g}"] = {
            "accuracy": float(c.mean()),
            "llm_rate": float(routed.mean()),
            "threshold": thr,
        }
    return out


def routed_at_dev_delta(
    dev_priority: FloatArray, priority: FloatArray, small: BoolArray, llm: BoolArray, budget: float
) -> tuple[BoolArray, BoolArray, float]:
    """(correctness, routed, threshold): inputs whose priority exceeds the ``floor(budget * n)``
    -th highest dev priority go to the LLM (so at most that share of dev does): the library's
    :func:`~datashunt.training.guarantees.ranking.budget_threshold` on the negated priority."""
    delta = budget_threshold(-np.asarray(dev_priority, dtype=np.float64), budget)
    routed = -np.asarray(priority, dtype=np.float64) < delta
    return np.where(routed, llm, small), routed, -delta


def run(args: argparse.Namespace) -> dict[str, Any]:
    budgets = tuple(float(b) for b in csv_list(args.budgets))
    heads = csv_list(args.heads)
    report: dict[str, Any] = {
        "config": {
            "budgets": list(budgets),
            "folds": args.folds,
            "repeats": args.repeats,
            "heads": {h: list(HEADS[h]) for h in heads},
            "pca": args.pca,
        },
        "datasets": {},
    }
    for name in csv_list(args.data):
        for bname, base in BASES[name].items():
            t0 = time.perf_counter()
            dev, test, info = load_splits(name, base, Path(args.cache_dir))
            key = f"{name}/{bname}"
            # the bench's figures with the confidence (check against recorded*.md)
            conf_test = test_at_dev_delta(
                -dev.probs.max(axis=1), -test.probs.max(axis=1), test, budgets
            )
            check = {
                "gate_test_accuracy": float(test.small.mean()),
                "llm_test_accuracy_strict": float((test.llm & test.readable).mean()),
                "gate_test_auroc": auroc(test.probs.max(axis=1), test.small),
                "max_test": conf_test,
            }
            prs: dict[str, list[FloatArray]] = {
                "max": [-dev.probs.max(axis=1)],
                "margin": [-confidence_features(dev.probs)[:, dev.probs.shape[1]]],
            }
            prs.update(cross_fitted(dev, base, heads, args.folds, args.repeats, args.pca))
            table = dev_table(dev, prs, budgets)
            g = gain(dev.small, dev.llm)
            oracle = {
                f"{b:g}": float(
                    routed_correct(
                        g.astype(float) + 1e-9 * dev.probs.max(axis=1), dev.small, dev.llm, b
                    ).mean()
                )
                for b in budgets
            }
            res: dict[str, Any] = {
                "base": dict(base),
                "llm_column": LLM_COLUMN[name],
                **info,
                "n_dev": len(dev.y),
                "n_test": len(test.y),
                "check": check,
                "dev": table,
                "dev_oracle": oracle,
                "dev_gate": float(dev.small.mean()),
                "dev_llm": float(dev.llm.mean()),
            }
            # a head "wins" when its mean dev accuracy over the budgets beats the max probability
            # with a 95 % paired interval above 0; the best such head is measured on test
            winners = [
                h
                for h in heads
                if table[h]["mean_vs_max"]["lo"] > 0
                and table[h]["mean_accuracy"] > table["max"]["mean_accuracy"]
            ]
            best = max(winners, key=lambda h: table[h]["mean_accuracy"], default=None)
            res["decision"] = {"winners": winners, "kept": best}
            if best is not None or args.test_anyway:
                h = best or max(heads, key=lambda h: table[h]["mean_accuracy"])
                in_dev = head_priority(h, dev, dev, base, args.pca)()
                on_test = head_priority(h, dev, test, base, args.pca)()
                res["test"] = {
                    "head": h,
                    "kept_on_dev": best is not None,
                    "deferral": test_at_dev_delta(in_dev, on_test, test, budgets),
                    "max": conf_test,
                    "deferral_vs_max": {
                        f"{b:g}": paired_bootstrap(
                            routed_at_dev_delta(in_dev, on_test, test.small, test.llm, b)[0].astype(
                                float
                            )
                            - routed_at_dev_delta(
                                -dev.probs.max(axis=1),
                                -test.probs.max(axis=1),
                                test.small,
                                test.llm,
                                b,
                            )[0],
                            seed=3,
                        )
                        for b in budgets
                    },
                }
            res["seconds"] = round(time.perf_counter() - t0, 1)
            report["datasets"][key] = res
            print(markdown_one(key, res, budgets), flush=True)
    return report


# ---- report ------------------------------------------------------------------------------


def markdown_one(key: str, r: Mapping[str, Any], budgets: Sequence[float]) -> str:
    c = r["check"]
    bs = [f"{b:g}" for b in budgets]
    lines = [
        f"### {key}: gate = {' + '.join(f'{w:g} × {g}' for g, w in r['base'].items())}",
        "",
        "Check against bench/results/recorded*.md (test): gate alone "
        f"{pct(c['gate_test_accuracy'])} %, "
        f"AUROC {c['gate_test_auroc']:.3f}; shunt by max probability at δ from dev: "
        + ", ".join(
            f"{pct(v['accuracy'])} % at {pct(v['llm_rate'])} %" for v in c["max_test"].values()
        ),
        "",
        f"Dev ({r['n_dev']} inputs; gate {pct(r['dev_gate'])} %, "
        f"LLM with fallback {pct(r['dev_llm'])} %), "
        "accuracy % at each LLM-call budget; heads cross-fitted "
        "(mean over fold seeds); Δ = paired difference with `max` ± bootstrap SE (points):",
        "",
        "| ranking | "
        + " | ".join(f"{100 * float(b):.0f} %" for b in bs)
        + " | mean | Δ mean ± SE [95 % CI] | AUROC LLM-better |",
        "|---|" + "---:|" * (len(bs) + 3),
    ]
    for name, row in r["dev"].items():
        cells = []
        for b in bs:
            v = row["budgets"][b]
            d = v["vs_max"]
            cells.append(
                f"{pct(v['accuracy'])}"
                + ("" if name == "max" else f" ({100 * d['mean']:+.1f}±{100 * d['se']:.1f})")
            )
        m = row["mean_vs_max"]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {pct(row['mean_accuracy'])} | "
            + (
                ""
                if name == "max"
                else f"{100 * m['mean']:+.2f} ± {100 * m['se']:.2f} "
                f"[{100 * m['lo']:+.2f}, {100 * m['hi']:+.2f}]"
            )
            + f" | {row['auroc_llm_better']:.3f} |"
        )
    lines.append("| oracle | " + " | ".join(pct(r["dev_oracle"][b]) for b in bs) + " | | | |")
    d = r["decision"]
    lines += [
        "",
        f"Kept on dev: {d['kept'] or 'none'} "
        f"(heads with a 95 % interval above 0: {d['winners'] or 'none'})",
    ]
    if "test" in r:
        t = r["test"]
        lines += [
            "",
            f"Test at δ from dev ({t['head']} fitted on all of dev"
            + ("" if t["kept_on_dev"] else "; NOT kept on dev, shown for information")
            + "):",
            "",
            "| ranking | " + " | ".join(f"{100 * float(b):.0f} %" for b in bs) + " |",
            "|---|" + "---:|" * len(bs),
        ]
        for k in ("max", "deferral"):
            lines.append(
                f"| {k} | "
                + " | ".join(
                    f"{pct(t[k][b]['accuracy'])} at {pct(t[k][b]['llm_rate'])}" for b in bs
                )
                + " |"
            )
        dv = t["deferral_vs_max"]
        lines.append(
            "| Δ ± SE (points) | "
            + " | ".join(f"{100 * dv[b]['mean']:+.1f} ± {100 * dv[b]['se']:.1f}" for b in bs)
            + " |"
        )
        lines.append(
            f"\nTest: gate alone {pct(c['gate_test_accuracy'])} %, `{r['llm_column']}` alone "
            f"{pct(c['llm_test_accuracy_strict'])} % (accuracy % at LLM calls %)."
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.deferral", description=__doc__)
    ap.add_argument("--data", default="isear,mr")
    ap.add_argument("--cache-dir", default=".cache/r18/probs")
    ap.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS))
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="fold seeds to average over")
    ap.add_argument("--pca", type=int, default=16, help="dimensions of the feature projection")
    ap.add_argument(
        "--test-anyway", action="store_true", help="test figures for the best head even if not kept"
    )
    ap.add_argument("--out", default="bench/results/deferral.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    report = run(args)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    budgets = report["config"]["budgets"]
    md = "\n".join(markdown_one(k, r, budgets) for k, r in report["datasets"].items())
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.md')} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
