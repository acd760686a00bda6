"""``datashunt bench --llm-column COL``: the benchmark against recorded LLM answers.

Reads each data set's train/dev/test (a bundled name such as ``mr`` or ``isear``, or any
CSV/TSV/JSONL file with ``--text-col``, ``--label-col`` and ``--split-col``), takes the gate
from ``--gate`` (or trains one, cached under ``--cache-dir``), replays the answer columns as
LLMs and writes the JSON report, its markdown and the accuracy-vs-call-rate PNG.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..benchmark.ranking import choose_mixture
from ..benchmark.recorded import RecordedConfig, bench_recorded, recorded_markdown
from ..benchmark.tasks import DEFAULT_RECIPE, GATE_RECIPES
from ..data import KNOWN_DATASETS, Dataset, read_dataset
from ..errors import ConfigError, DataShuntError
from ..gates import Gate, load_gate
from ..gates.base import softmax
from ..gates.ensemble import EnsembleGate, is_ensemble_dir
from ..llm.replay import ColumnReplayLLM

__all__ = [
    "columns_for",
    "gate_for",
    "mixture_on_dev",
    "plot_recorded",
    "run_recorded",
]


def _named(values: list[str], names: list[str], what: str) -> dict[str, str]:
    """``DATA=VALUE`` options per data set; a bare ``VALUE`` serves every data set."""
    out: dict[str, str] = {}
    for v in values:
        name, sep, rest = v.partition("=")
        if sep and name.strip() in names:
            out[name.strip()] = rest.strip()
        elif sep and len(names) == 1 and "/" not in name and "," not in name:
            raise ConfigError(f"{what} names data set {name!r}, but --data is {names[0]!r}")
        else:
            for n in names:
                out.setdefault(n, v.strip())
    return out


def columns_for(args: argparse.Namespace, names: list[str]) -> dict[str, list[str]]:
    """The answer columns per data set (``--llm-column [DATA=]COL[,COL2]``).

    Raises:
        ConfigError: a data set without a column.
    """
    given = _named(args.llm_column, names, "--llm-column")
    out = {}
    for n in names:
        if n not in given:
            raise ConfigError(f"no --llm-column for {n!r}: pass --llm-column {n}=COLUMN")
        out[n] = [c.strip() for c in given[n].split(",") if c.strip()]
    return out


def _read(args: argparse.Namespace, name: str, split: str, labels: Any = None) -> Dataset:
    from .common import label_names

    if name in KNOWN_DATASETS:
        return read_dataset(name, split=split, labels=labels)
    if not args.split_col:
        raise ConfigError(
            f"{name} needs --split-col: the column saying train/dev/test (δ is chosen on dev, "
            "figures are measured on test)"
        )
    return read_dataset(
        name,
        split=split,
        text_col=args.text_col,
        label_col=args.label_col,
        label_names=label_names(args.label_names),
        split_col=args.split_col,
        labels=labels,
        encoding=args.encoding,
    )


def gate_for(
    args: argparse.Namespace, name: str, given: str | None, train: Dataset, dev: Dataset
) -> tuple[Gate, dict[str, Any]]:
    """The gate: ``--gate``'s folder, or one trained with the data set's recipe (cached).

    ``--gate DIR1+DIR2`` gives several gates; :func:`mixture_on_dev` mixes them.
    """
    from ..training import TrainConfig, train_gate

    if given is not None:
        from .common import existing_gate

        if is_ensemble_dir(given):
            return EnsembleGate.load(given), {"dir": given, "trained_here": False}
        return load_gate(existing_gate(given)), {"dir": given, "trained_here": False}
    kind, epochs, max_length, lr = GATE_RECIPES.get(name, DEFAULT_RECIPE)
    if args.gate_kind:
        kind = args.gate_kind
    safe = Path(name).name.replace(".", "_")
    recipe = "" if kind == "embedding" else f"-e{epochs}-l{max_length}-lr{lr:g}"
    out = Path(args.cache_dir) / f"recorded-{safe}-{kind}{recipe}"
    info: dict[str, Any] = {
        "dir": str(out),
        "kind": kind,
        "epochs": epochs,
        "max_length": max_length,
        "lr": lr,
    }
    if not (out / "datashunt_train.json").is_file():  # written last: a finished gate
        print(f"[{name}] training a {kind} gate on {len(train)} examples into {out}")
        cfg = TrainConfig(kind=kind, epochs=epochs, max_length=max_length, lr=lr)  # type: ignore[arg-type]
        rep = train_gate(train, out, dev=dev, config=cfg, progress=not args.no_progress)
        info.update(trained_here=True, train_s=round(rep.seconds, 1))
    else:
        info["trained_here"] = False
    return load_gate(out), info


def mixture_on_dev(
    members: list[tuple[Gate, dict[str, Any]]],
    dev: Dataset,
    llm: ColumnReplayLLM,
    budgets: tuple[float, ...],
) -> tuple[Gate, dict[str, Any]]:
    """Several gates as one: each member's temperature is fitted on dev, then the mixture
    (:func:`~datashunt.benchmark.ranking.choose_mixture`) with the best mean dev routing
    accuracy against the recorded answers; the first member alone where no mixture beats it.
    """
    from ..training.fitting.metrics import fit_temperature

    labels = tuple(members[0][0].labels)
    y = np.array([labels.index(e.label) for e in dev.examples])
    probs = []
    for gate, _ in members:
        if tuple(gate.labels) != labels:
            raise ConfigError(f"gates to mix must share labels: {labels} vs {gate.labels}")
        logits = gate.predict_logits(dev.texts)  # type: ignore[attr-defined]
        gate.temperature = fit_temperature(logits, y)  # type: ignore[attr-defined]
        probs.append(softmax(logits, gate.temperature))  # type: ignore[attr-defined]
    answers = [llm.recorded(t) or "" for t in dev.texts]
    right = np.array([a == labels[k] for a, k in zip(answers, y, strict=True)])
    readable = np.array([a in labels for a in answers])
    choice = choose_mixture(probs, y, right, readable, budgets)
    info: dict[str, Any] = {
        "members": [i for _, i in members],
        "member_temperatures": [float(g.temperature) for g, _ in members],  # type: ignore[attr-defined]
        "weights": list(choice.weights),
        "mode": choice.mode,
        "dev_accuracy": choice.dev_accuracy,
        "dev_auroc": choice.dev_auroc,
        "first_alone": dict(choice.table[0]),
        "tried": len(choice.table),
    }
    if choice.weights[0] == 1.0:
        return members[0][0], {**members[0][1], "mixture": info}
    gate = EnsembleGate(
        [g for g, _ in members],
        choice.weights,
        mode=choice.mode,
        member_dirs=[str(i["dir"]) for _, i in members],
        memo=True,  # the benchmark predicts dev and test more than once
    )
    return gate, {"dir": "+".join(str(i["dir"]) for _, i in members), "mixture": info}


def plot_recorded(report: Mapping[str, Any], path: Path) -> Path:
    """Accuracy against LLM-call rate per data set: the δ sweep, the routers, each LLM alone,
    the gate alone, the shunt at the dev-chosen δ values and the cascade."""
    try:
        import matplotlib
    except ImportError as exc:
        raise DataShuntError(
            "the PNG plot needs matplotlib: pip install 'datashunt[plot]' (or pass --no-plot)"
        ) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(report["datasets"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(5.6 * len(items), 4.8), squeeze=False)
    for ax, (name, res) in zip(axes[0], items, strict=True):
        c, m = res["curve"], res["methods"]
        rate = [100 * r for r in c["llm_rate"]]
        ax.plot(rate, [100 * a for a in c["ds_none"]], color="C0", label="Data Shunt (δ sweep)")
        ax.plot(rate, [100 * a for a in c["oracle"]], color="C2", ls=":", label="oracle router")
        ax.plot(rate, [100 * a for a in c["random"]], color="C7", ls="--", label="random router")
        ax.axhline(100 * m["small"]["accuracy"], color="C1", lw=1, label="gate alone")
        for i, v in enumerate(v for k, v in m.items() if k.startswith("llm")):
            ax.axhline(100 * v["accuracy"], color=f"C{3 + i}", lw=1, label=f"{v['column']} alone")
        ds = [(k, v) for k, v in m.items() if k.startswith("ds-")]
        ax.scatter(
            [100 * v["llm_rate"] for _, v in ds],
            [100 * v["accuracy"] for _, v in ds],
            color="C0",
            zorder=5,
            label="Data Shunt at δ from dev",
        )
        casc = [v for k, v in m.items() if k.startswith("cascade")]
        if casc:
            ax.scatter(
                [100 * v["llm_rate"] for v in casc],
                [100 * v["accuracy"] for v in casc],
                marker="*",
                s=120,
                color="C5",
                zorder=6,
                label="cascade (x: share asking the first LLM)",
            )
        ax.set_title(f"{name} (n = {res['n_test']})")
        ax.set_xlabel("LLM calls (% of inputs)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy against LLM-call rate, recorded LLM answers (test split)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_recorded(args: argparse.Namespace, out: Path, t0: float) -> int:
    """Run the recorded-answers benchmark and write JSON, markdown and PNG."""
    from ..benchmark.report import write_json

    names = [d.strip() for d in args.data.split(",") if d.strip()]
    columns = columns_for(args, names)
    gates = _named(args.gate, names, "--gate") if args.gate else {}
    costs = {}
    for spec in args.llm_cost:
        col, sep, value = spec.partition("=")
        try:
            costs[col.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--llm-cost wants COL=NUMBER, got {spec!r}") from None
        if not sep:
            raise ConfigError(f"--llm-cost wants COL=NUMBER, got {spec!r}")
    try:
        budgets = tuple(float(b) for b in args.budgets.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--budgets wants numbers like 0.2,0.3, got {args.budgets!r}") from None
    config = RecordedConfig(budgets=budgets, costs=costs, seed=args.seed)
    report: dict[str, Any] = {
        "model": "recorded answers",
        "config": {"budgets": list(budgets), "costs": costs, "columns": columns},
        "datasets": {},
    }
    for name in names:
        t_ds = time.perf_counter()
        train = _read(args, name, "train")
        dev = _read(args, name, "dev", train.labels)
        test = _read(args, name, "test", train.labels)
        if args.dev_n:
            dev = dev.head(args.dev_n) if args.dev_n < len(dev) else dev
        if args.test_n:
            test = test.head(args.test_n) if args.test_n < len(test) else test
        text_col = None if name in KNOWN_DATASETS else args.text_col
        llms = {
            col: ColumnReplayLLM.from_data(name, col, text_col=text_col, encoding=args.encoding)
            for col in columns[name]
        }
        given = gates.get(name)
        members: list[Gate] | None = None  # what the deferral-dev score reads beside the gate
        if given is not None and "+" in given:
            given_gates = [gate_for(args, name, d, train, dev) for d in given.split("+")]
            gate, info = mixture_on_dev(given_gates, dev, next(iter(llms.values())), budgets)
            members = [g for g, _ in given_gates]
        else:
            gate, info = gate_for(args, name, given, train, dev)
        res = bench_recorded(
            name,
            gate,
            llms,
            dev,
            test,
            config=config,
            train=train if args.deferral else None,
            deferral_dev=bool(args.deferral),
            members=members,
            progress=not args.no_progress,
        )
        res["gate"] = info
        res["replay_misses"] = {col: llm.misses for col, llm in llms.items()}
        res["seconds"] = round(time.perf_counter() - t_ds, 1)
        report["datasets"][Path(name).name if name not in KNOWN_DATASETS else name] = res
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(report, out, end="\n")
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    md.write_text(
        "\n".join(recorded_markdown(n, r) for n, r in report["datasets"].items()),
        encoding="utf-8",
    )
    print(f"wrote {out} and {md}")
    if not args.no_plot:
        png = plot_recorded(report, Path(args.plot) if args.plot else out.with_suffix(".png"))
        print(f"wrote {png}")
    return 0
