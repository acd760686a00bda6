"""Quality and cost of the shunt on labelled data: the paper's table, on open data.

For each data set: the small model alone, the LLM alone, the shunt without pruning, with soft
and with hard pruning, and DS+ (soft and hard pruning plus Prompt Transferring); a random router
and an oracle router sending the same share of inputs to the LLM. Columns: accuracy, LLM-call
rate, LLM tokens, wall time. δ is chosen on dev (temperature and threshold, with
:func:`datashunt.calibrate`), every figure is measured on test. A δ sweep gives the accuracy
against LLM-call-rate curve.

Costs are counted honestly under caching: LLM answers are cached by (model, prompt) in an
:class:`~datashunt.llm_cache.LLMCache`, so a re-run pays nothing, and each answer keeps the
latency and tokens it cost when it was bought; the wall-time column is the gate's pass plus the
LLM latencies of the calls a method makes, as if made one after another.

Run it with ``datashunt bench`` (see ``--help``), or from Python::

    report = run_bench(BenchConfig(datasets=("sst2",), test_n=200), llm, model="gpt-4o-mini")
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import calibrate, parse_target
from .data import Dataset, read_dataset
from .errors import ConfigError
from .gates import Gate, load_gate
from .policy import ShuntPolicy
from .retry import RetryPolicy
from .shunt import Shunt, _answer
from .transfer import PromptTransfer
from .types import Decision, LLMReply, LLMRequest

__all__ = [
    "METHODS",
    "TASKS",
    "BenchConfig",
    "TaskSpec",
    "bench_dataset",
    "markdown_report",
    "plot_curves",
    "prepare_gate",
    "run_bench",
]

#: Methods in table order. ``ds-*`` are the shunt with a prompt mode; ``ds-plus`` adds Prompt
#: Transferring to soft and hard pruning (DS+); ``random`` and ``oracle`` route the same share of
#: inputs as ``ds-none`` to the LLM, at random and with hindsight.
METHODS = (
    "small",
    "llm",
    "ds-none",
    "ds-soft",
    "ds-hard",
    "ds-plus",
    "random",
    "oracle",
)
_DS_MODES = {"ds-none": "none", "ds-soft": "soft", "ds-hard": "hard", "ds-plus": "both"}
METHOD_NAMES = {
    "small": "small model alone",
    "llm": "LLM alone",
    "ds-none": "Data Shunt, no pruning",
    "ds-soft": "Data Shunt, soft pruning",
    "ds-hard": "Data Shunt, hard pruning",
    "ds-plus": "DS+ (soft + hard + transfer)",
    "random": "random router, same LLM rate",
    "oracle": "oracle router, same LLM rate",
}


@dataclass(frozen=True)
class TaskSpec:
    """How the LLM is asked about one data set."""

    template: str
    noun: str
    synonyms: Mapping[str, Sequence[str]] = field(default_factory=dict)


# Small models are sensitive to wording: task-specific instructions, input last, "Answer:" at
# the end (SmolLM2-135M: 0.90 on amazon-mds dev with the sentiment one, 0.75 with the generic).
_SENTIMENT = (
    "Classify the sentiment of this {noun} as {{candidates}}. {{hint}}Answer with one word.\n"
    "{title}: {{text}}\nAnswer:"
)
TASKS: dict[str, TaskSpec] = {
    "amazon-mds": TaskSpec(_SENTIMENT.format(noun="review", title="Review"), "review"),
    "sst2": TaskSpec(_SENTIMENT.format(noun="movie review", title="Review"), "movie review"),
    "agnews": TaskSpec(
        "Classify the topic of this news article as one of: {candidates}. {hint}"
        "Answer with one word.\nArticle: {text}\nAnswer:",
        "article",
        {
            "Sci/Tech": ("science", "technology", "tech", "sci-tech", "scitech", "science/tech"),
            "Sports": ("sport",),
            "Business": ("economy", "finance", "business news"),
            "World": ("world news", "politics", "international"),
        },
    ),
}
_GENERIC = TaskSpec(
    "Classify this text as one of: {candidates}. {hint}Answer with one word.\nText: {text}\n"
    "Answer:",
    "text",
)


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`run_bench` measures.

    Attributes:
        datasets: bundled names (``amazon-mds``, ``sst2``, ``agnews``); for your own data call
            :func:`bench_dataset` with ``dev=`` and ``test=`` datasets and a gate.
        test_n: a fixed hash-ordered sample of the test split per data set (``None``: all).
        dev_n: calibration examples from dev (``None``: all).
        train_n: training examples for a gate trained here (the embedding kind, seconds).
        gates: data set -> gate directory; a data set without one gets an embedding gate
            trained on ``train_n`` examples and cached under ``cache_dir``.
        target: how δ is chosen on dev (``budget:0.3``, ``precision:0.95``).
        methods: which rows to produce (``small`` and ``llm`` are always computed).
        transfer_budget: DS+ keeps the most decisive sentences within this many gate tokens.
        concurrency: LLM calls in flight (1 for the local server, more for hosted endpoints).
        curve_points: call rates on the δ-sweep curve.
        cache_dir: where trained gates are kept.
        seed: sampling of the random router's tokens and of training subsets.
    """

    datasets: tuple[str, ...] = ("amazon-mds", "sst2", "agnews")
    test_n: int | None = 400
    dev_n: int | None = 1000
    train_n: int = 2000
    gates: Mapping[str, str] = field(default_factory=dict)
    target: str = "budget:0.3"
    methods: tuple[str, ...] = METHODS
    transfer_budget: int = 64
    concurrency: int = 1
    curve_points: int = 41
    cache_dir: str = ".cache/gates"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown bench methods {unknown}; choose from {list(METHODS)}")
        if not self.datasets:
            raise ConfigError("no data sets to bench")
        for name in ("test_n", "dev_n"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"{name} must be >= 2 (or None for all), got {v}")
        if self.train_n < 10 or self.concurrency < 1 or self.transfer_budget < 1:
            raise ConfigError("train_n must be >= 10, concurrency and transfer_budget >= 1")
        parse_target(self.target, llm_accuracy=0.0)  # validates the spec early


@dataclass
class _Answer:
    label: str
    source: str  # "llm" or "fallback"
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


def prepare_gate(
    name: str, config: BenchConfig, *, progress: bool = True
) -> tuple[Gate, dict[str, Any]]:
    """The gate for data set ``name``: the configured directory, or an embedding gate trained
    on ``train_n`` training examples (cached under ``cache_dir``)."""
    from .train import TrainConfig, train_gate

    given = config.gates.get(name)
    info: dict[str, Any]
    if given is not None:
        info = {"dir": str(given), "trained_here": False}
        return load_gate(given), info
    safe = name.replace("/", "_").replace(".", "_")
    out = Path(config.cache_dir) / f"bench-{safe}-embedding-{config.train_n}-s{config.seed}"
    info = {"dir": str(out), "kind": "embedding", "train_n": config.train_n}
    if not (out / "datashunt_train.json").is_file():  # written last: a finished gate
        train = read_dataset(name, split="train", limit=config.train_n)
        t0 = time.perf_counter()
        if progress:
            print(f"[{name}] training an embedding gate on {len(train)} examples into {out}")
        train_gate(
            train, out, config=TrainConfig(kind="embedding", seed=config.seed), progress=False
        )
        info["train_s"] = round(time.perf_counter() - t0, 1)
        info["trained_here"] = True
    else:
        info["trained_here"] = False
    return load_gate(out), info


def bench_dataset(
    name: str,
    gate: Gate,
    llm: Callable[[LLMRequest], LLMReply | str],
    config: BenchConfig,
    *,
    dev: Dataset | None = None,
    test: Dataset | None = None,
    task: TaskSpec | None = None,
    latency_of: Callable[[], float | None] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every method of :data:`METHODS` on one data set: a JSON-ready dict.

    Args:
        name: the data set (bundled name, used to read dev/test unless given).
        gate: the small model.
        llm: ``LLMRequest -> LLMReply | str`` (wrap it in :class:`~datashunt.llm_cache.CachedLLM`
            to cache answers).
        config: sizes, δ target, methods.
        dev, test: labelled data; default the bundled splits, sampled per ``config``.
        task: the prompt template, noun and label synonyms (default per data set).
        latency_of: what the answer just returned cost (``CachedLLM.last_latency_s``); default
            the measured wall time of the call.
        retry: how failed calls are retried (default :class:`RetryPolicy`).
        progress: print progress and show tqdm bars.
    """
    task = task or TASKS.get(name, _GENERIC)
    dev = dev or read_dataset(name, split="dev", limit=config.dev_n)
    test = test or read_dataset(name, split="test", limit=config.test_n)
    labels = tuple(gate.labels)
    unknown = sorted({e.label for e in test.examples} - set(labels))
    if unknown:
        raise ConfigError(f"{name} test data has labels {unknown} the gate does not know")
    y = np.array([labels.index(e.label) for e in test.examples])
    texts = list(test.texts)
    n = len(texts)

    report = calibrate(gate, dev, parse_target(config.target, llm_accuracy=0.0))
    policy: ShuntPolicy = report.policy
    t0 = time.perf_counter()
    probs = np.asarray(gate.predict_proba(texts), dtype=np.float64)
    gate_s = time.perf_counter() - t0
    conf = probs.max(axis=1)
    small_correct = probs.argmax(axis=1) == y

    def shunt(mode: str, transfer: PromptTransfer | None = None) -> Shunt:
        return Shunt(
            gate,
            policy,
            prompt_mode=mode,  # type: ignore[arg-type]
            template=task.template,
            transfer=transfer,
            synonyms=task.synonyms,
            noun=task.noun,
            retry=retry,
        )

    base = shunt("none")
    decisions = [base.decision_from_probs(row) for row in probs]
    forced = [replace(d, route="llm", candidates=labels) for d in decisions]
    methods: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[int, _Answer]] = {}

    def ask(key: str, s: Shunt, decs: Sequence[Decision]) -> None:
        t_prep = time.perf_counter()
        requests = s.prepare(texts, decs)
        prep_s = time.perf_counter() - t_prep
        index = [i for i, d in enumerate(decs) if d.route == "llm"]
        got = _ask_all(s, requests, llm, latency_of, config.concurrency, f"{name} {key}", progress)
        answers[key] = dict(zip(index, got, strict=True))
        saved = 0
        if s.transfer is not None:
            saved = sum(_approx_saved(r.text, r.variables.get("text", r.text)) for r in requests)
        methods[key] = _score(
            y, labels, answers[key], gate_s + prep_s, small_correct, strict=key == "llm"
        )
        if s.transfer is not None:
            methods[key]["transfer_words_saved"] = saved
            methods[key]["transfer_s"] = round(prep_s, 3)

    methods["small"] = {
        "accuracy": float(small_correct.mean()),
        "llm_rate": 0.0,
        "llm_calls": 0,
        "tokens": 0,
        "wall_s": round(gate_s, 3),
    }
    ask("llm", base, forced)
    # LLM alone asks everything: the gate's pass is not part of its cost
    methods["llm"]["wall_s"] = round(methods["llm"]["wall_s"] - gate_s, 3)
    llm_ans = answers["llm"]
    # routers fall back to the gate on an unreadable answer, as the shunt does
    llm_correct = np.array([llm_ans[i].label == labels[y[i]] for i in range(n)])
    for key in ("ds-none", "ds-soft", "ds-hard", "ds-plus"):
        if key not in config.methods:
            continue
        transfer = PromptTransfer(gate, config.transfer_budget) if key == "ds-plus" else None
        ask(key, shunt(_DS_MODES[key], transfer), decisions)

    routed = np.array([d.route == "llm" for d in decisions])
    k = int(routed.sum())
    if "random" in config.methods:
        methods["random"] = _random_router(k, n, small_correct, llm_correct, llm_ans, gate_s)
    if "oracle" in config.methods:
        methods["oracle"] = _oracle_router(k, n, small_correct, llm_correct, llm_ans, gate_s)
    ordered = {m: methods[m] for m in METHODS if m in methods}

    groups = _groups(test, answers, small_correct, y, labels)
    curve = _curve(conf, small_correct, llm_correct, config.curve_points)
    return {
        "n_test": n,
        "n_dev": len(dev),
        "labels": list(labels),
        "target": config.target,
        "threshold": policy.threshold,
        "temperature": policy.temperature,
        "dev": {
            "accuracy": report.dev_accuracy,
            "llm_rate": policy.metrics.get("llm_rate"),
            "small_accuracy": policy.metrics.get("small_accuracy"),
        },
        "test_llm_rate": k / n,
        "gate_s": round(gate_s, 3),
        "methods": ordered,
        "groups": groups,
        "curve": curve,
        # per test input, for re-plotting and for other thresholds without asking again
        "per_input": {
            "confidence": [round(float(c), 5) for c in conf],
            "small_correct": [bool(v) for v in small_correct],
            "llm_correct": [bool(v) for v in llm_correct],
            "group": [e.group for e in test.examples],
        },
        "template": task.template,
    }


def _approx_saved(original: str, shown: str) -> int:
    return max(0, len(original.split()) - len(shown.split()))


def _ask_all(
    shunt: Shunt,
    requests: Sequence[LLMRequest],
    llm: Callable[[LLMRequest], LLMReply | str],
    latency_of: Callable[[], float | None] | None,
    concurrency: int,
    what: str,
    progress: bool,
) -> list[_Answer]:
    """Ask every request (retried per the shunt's policy); failures fall back to the gate."""

    def one(req: LLMRequest) -> _Answer:
        t0 = time.perf_counter()
        out = shunt.retry.call(_answer, llm, req)  # empty answers are retried too
        measured = time.perf_counter() - t0
        lat = latency_of() if latency_of is not None and out.error is None else None
        latency = measured if lat is None else lat
        res = shunt.finish(req, out.value, error=out.error, record=False, attempts=out.attempts)
        reply = res.reply
        pt = (reply.prompt_tokens or 0) if reply is not None else 0
        ct = (reply.completion_tokens or 0) if reply is not None else 0
        return _Answer(res.label, res.source, pt + ct, pt, ct, latency)

    if not requests:
        return []
    bar = _bar(len(requests), what, progress)
    out: list[_Answer] = []
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for ans in pool.map(one, requests):
                out.append(ans)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


def _bar(total: int, what: str, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=what, unit="call", leave=False)


def _score(
    y: np.ndarray,
    labels: tuple[str, ...],
    ans: Mapping[int, _Answer],
    base_s: float,
    small_correct: np.ndarray,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """A method's figures. The shunt answers with the gate's label when the LLM's answer cannot
    be read (a fallback); the LLM alone has no gate to fall back on (``strict``): such an
    answer is wrong."""
    n = len(y)
    correct = small_correct.copy()
    for i, a in ans.items():
        correct[i] = a.label == labels[y[i]] and (a.source == "llm" or not strict)
    calls = len(ans)
    return {
        "accuracy": float(correct.mean()),
        "llm_rate": calls / n,
        "llm_calls": calls,
        "tokens": sum(a.tokens for a in ans.values()),
        "prompt_tokens": sum(a.prompt_tokens for a in ans.values()),
        "completion_tokens": sum(a.completion_tokens for a in ans.values()),
        "fallbacks": sum(a.source != "llm" for a in ans.values()),
        "llm_s": round(sum(a.latency_s for a in ans.values()), 3),
        "wall_s": round(base_s + sum(a.latency_s for a in ans.values()), 3),
        # the LLM's own accuracy where it was asked: an unreadable answer counts as wrong
        "llm_accuracy_on_routed": (
            float(np.mean([a.source == "llm" and a.label == labels[y[i]] for i, a in ans.items()]))
            if ans
            else None
        ),
    }


def _random_router(
    k: int,
    n: int,
    small_correct: np.ndarray,
    llm_correct: np.ndarray,
    llm_ans: Mapping[int, _Answer],
    gate_s: float,
) -> dict[str, Any]:
    """The expected figures of sending ``k`` of ``n`` inputs, chosen at random, to the LLM."""
    r = k / n
    tokens = sum(a.tokens for a in llm_ans.values())
    llm_s = sum(a.latency_s for a in llm_ans.values())
    return {
        "accuracy": float((1 - r) * small_correct.mean() + r * llm_correct.mean()),
        "llm_rate": r,
        "llm_calls": k,
        "tokens": round(r * tokens),
        "wall_s": round(gate_s + r * llm_s, 3),
        "note": "expectation over random choices of the routed inputs",
    }


def _oracle_router(
    k: int,
    n: int,
    small_correct: np.ndarray,
    llm_correct: np.ndarray,
    llm_ans: Mapping[int, _Answer],
    gate_s: float,
) -> dict[str, Any]:
    """Hindsight routing of ``k`` inputs: first those the gate gets wrong and the LLM right."""
    helps = [i for i in range(n) if not small_correct[i] and llm_correct[i]]
    hurts = [i for i in range(n) if small_correct[i] and not llm_correct[i]]
    neutral = [i for i in range(n) if small_correct[i] == llm_correct[i]]
    rng = random.Random(0)  # noqa: S311 - which neutral inputs fill the quota does not matter
    rng.shuffle(neutral)
    rest = neutral + hurts  # the LLM is asked where it cannot hurt before where it would
    chosen = (helps + rest)[:k]
    correct = small_correct.copy()
    for i in chosen:
        correct[i] = llm_correct[i]
    return {
        "accuracy": float(correct.mean()),
        "llm_rate": k / n,
        "llm_calls": k,
        "tokens": sum(llm_ans[i].tokens for i in chosen),
        "wall_s": round(gate_s + sum(llm_ans[i].latency_s for i in chosen), 3),
        "note": "upper bound of routing: the LLM is asked where it is right and the gate wrong",
    }


def _groups(
    test: Dataset,
    answers: Mapping[str, Mapping[int, _Answer]],
    small_correct: np.ndarray,
    y: np.ndarray,
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """Accuracy and LLM rate per slice (e.g. product category) for the measured methods."""
    names = sorted({e.group for e in test.examples if e.group})
    if not names:
        return {}
    out: dict[str, Any] = {}
    for g in names:
        idx = [i for i, e in enumerate(test.examples) if e.group == g]
        row: dict[str, Any] = {"n": len(idx)}
        row["small"] = {"accuracy": float(small_correct[idx].mean()), "llm_rate": 0.0}
        for key, ans in answers.items():
            strict = key == "llm"  # the LLM alone has no gate to fall back on
            correct = [
                (ans[i].label == labels[y[i]] and (ans[i].source == "llm" or not strict))
                if i in ans
                else bool(small_correct[i])
                for i in idx
            ]
            row[key] = {
                "accuracy": float(np.mean(correct)),
                "llm_rate": float(np.mean([i in ans for i in idx])),
            }
        out[g] = {k: row[k] for k in ("n", *[m for m in METHODS if m in row])}
    return out


def _curve(
    conf: np.ndarray, small_correct: np.ndarray, llm_correct: np.ndarray, points: int
) -> dict[str, list[float]]:
    """Accuracy as δ sweeps: the k least confident inputs go to the LLM (no pruning); as in the
    shunt, an unreadable answer falls back to the gate, so at rate 1 the curve can sit above the
    LLM-alone line."""
    n = len(conf)
    order = np.argsort(conf, kind="stable")
    gain = (llm_correct.astype(float) - small_correct.astype(float))[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    helps = int(np.sum(~small_correct & llm_correct))
    neutral = int(np.sum(small_correct == llm_correct))
    base = float(small_correct.mean())
    rates, ds, oracle, rnd, deltas = [], [], [], [], []
    for r in np.linspace(0.0, 1.0, points):
        k = int(round(r * n))
        rates.append(k / n)
        ds.append(base + cum[k] / n)
        # hindsight: where the LLM helps, then where it changes nothing, then where it hurts
        oracle.append(base + (min(k, helps) - max(0, k - helps - neutral)) / n)
        rnd.append((1 - k / n) * base + (k / n) * float(llm_correct.mean()))
        deltas.append(float(conf[order[k - 1]]) if k > 0 else 0.0)
    return {"llm_rate": rates, "ds_none": ds, "oracle": oracle, "random": rnd, "delta": deltas}


def run_bench(
    config: BenchConfig,
    llm: Callable[[LLMRequest], LLMReply | str],
    *,
    model: str,
    latency_of: Callable[[], float | None] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`bench_dataset` for every configured data set; returns the whole JSON report."""
    out: dict[str, Any] = {"config": _jsonable_config(config), "model": model, "datasets": {}}
    t0 = time.perf_counter()
    for name in config.datasets:
        t_ds = time.perf_counter()
        gate, info = prepare_gate(name, config, progress=progress)
        res = bench_dataset(
            name, gate, llm, config, latency_of=latency_of, retry=retry, progress=progress
        )
        res["gate"] = info
        res["seconds"] = round(time.perf_counter() - t_ds, 1)
        out["datasets"][name] = res
        if progress:
            print(_dataset_markdown(name, res))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _jsonable_config(config: BenchConfig) -> dict[str, Any]:
    d = asdict(config)
    d["gates"] = dict(config.gates)
    return d


# ---- output ------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _dataset_markdown(name: str, res: Mapping[str, Any]) -> str:
    lines = [
        f"### {name}: {res['n_test']} test inputs, δ = {res['threshold']:.4f} "
        f"(target {res['target']} on {res['n_dev']} dev)",
        "",
        "| method | accuracy % | LLM calls % | LLM tokens | wall s |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, m in res["methods"].items():
        lines.append(
            f"| {METHOD_NAMES[key]} | {_pct(m['accuracy'])} | {_pct(m['llm_rate'])} | "
            f"{m['tokens']:,} | {m['wall_s']:.1f} |"
        )
    groups = res.get("groups") or {}
    if groups:
        keys = [k for k in METHODS if k in next(iter(groups.values()))]
        lines += [
            "",
            f"Accuracy % per {name} slice (LLM calls % in brackets):",
            "",
            "| slice | n | " + " | ".join(keys) + " |",
            "|---|---:|" + "---:|" * len(keys),
        ]
        for g, row in groups.items():
            cells = []
            for k in keys:
                acc, rate = row[k]["accuracy"], row[k]["llm_rate"]
                cells.append(_pct(acc) + (f" ({_pct(rate)})" if k.startswith("ds") else ""))
            lines.append(f"| {g} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report's tables as markdown."""
    parts = [_dataset_markdown(n, r) for n, r in report["datasets"].items()]
    return "\n".join(parts)


def plot_curves(report: Mapping[str, Any], path: str | Path) -> Path:
    """Accuracy against LLM-call rate as δ sweeps, one panel per data set, saved as a PNG.

    Reference lines: LLM alone and small model alone; the random and oracle routers; the
    measured methods at the δ chosen on dev as points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(report["datasets"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(5.2 * len(items), 4.8), squeeze=False)
    markers = {"ds-none": "o", "ds-soft": "s", "ds-hard": "^", "ds-plus": "D"}
    for ax, (name, res) in zip(axes[0], items, strict=True):
        c, m = res["curve"], res["methods"]
        rate = [100 * r for r in c["llm_rate"]]
        ax.plot(rate, [100 * a for a in c["ds_none"]], color="C0", label="Data Shunt (δ sweep)")
        ax.plot(rate, [100 * a for a in c["oracle"]], color="C2", ls=":", label="oracle router")
        ax.plot(rate, [100 * a for a in c["random"]], color="C7", ls="--", label="random router")
        ax.axhline(100 * m["llm"]["accuracy"], color="C3", lw=1, label="LLM alone")
        ax.axhline(100 * m["small"]["accuracy"], color="C1", lw=1, label="small model alone")
        for key, mk in markers.items():
            if key in m:
                ax.scatter(
                    100 * m[key]["llm_rate"],
                    100 * m[key]["accuracy"],
                    marker=mk,
                    zorder=5,
                    label=f"{METHOD_NAMES[key]} (δ from dev)",
                )
        ax.set_title(f"{name} (n = {res['n_test']})")
        ax.set_xlabel("LLM calls (% of inputs)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=8)
    fig.suptitle(f"Accuracy against LLM-call rate — LLM: {report.get('model', '?')}")
    fig.tight_layout(rect=(0, 0.12 if len(items) > 1 else 0.2, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
