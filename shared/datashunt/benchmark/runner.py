"""Running the benchmark: the gate per data set, every method on test, the whole report.

Each LLM-routed input is asked through the engine (:meth:`Shunt.ask`, unrecorded), which times,
retries and parses the call; the runner only counts what each method cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, read_dataset
from ..engine import LLMCall, Shunt
from ..errors import ConfigError
from ..gates import Gate, load_gate
from ..llm import RetryPolicy
from ..policy import ShuntPolicy
from ..prompts import PromptMode
from ..training import TrainConfig, calibrate, parse_target, train_gate
from ..transfer import PromptTransfer
from ..types import Decision, LLMRequest
from .baselines import ROUTERS, Answer, Outcomes, curve, groups, score
from .report import dataset_markdown, jsonable_config
from .tasks import DS_MODES, METHODS, BenchConfig, TaskSpec, task_for

__all__ = ["bench_dataset", "prepare_gate", "run_bench"]


def prepare_gate(
    name: str, config: BenchConfig, *, progress: bool = True
) -> tuple[Gate, dict[str, Any]]:
    """The gate for data set ``name``: the configured directory, or an embedding gate trained
    on ``train_n`` training examples (cached under ``cache_dir``)."""
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
    llm: LLMCall,
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
        llm: ``LLMRequest -> LLMReply | str`` (wrap it in :class:`~datashunt.llm.CachedLLM`
            to cache answers).
        config: sizes, δ target, methods.
        dev, test: labelled data; default the bundled splits, sampled per ``config``.
        task: the prompt template, noun and label synonyms (default per data set).
        latency_of: what the answer just returned cost (``CachedLLM.last_latency_s``); default
            the measured wall time of the call.
        retry: how failed calls are retried (default :class:`RetryPolicy`).
        progress: print progress and show tqdm bars.

    Raises:
        ConfigError: if the test data has labels the gate does not know.
    """
    task = task or task_for(name)
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

    def shunt(mode: PromptMode, transfer: PromptTransfer | None = None) -> Shunt:
        return Shunt(
            gate,
            policy,
            prompt_mode=mode,
            template=task.template,
            transfer=transfer,
            synonyms=task.synonyms,
            noun=task.noun,
            retry=retry,
            llm=llm,
        )

    base = shunt("none")
    decisions = [base.decision_from_probs(row) for row in probs]
    forced = [replace(d, route="llm", candidates=labels) for d in decisions]
    methods: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[int, Answer]] = {}

    def ask(key: str, s: Shunt, decs: Sequence[Decision]) -> None:
        t_prep = time.perf_counter()
        requests = s.prepare(texts, decs)
        prep_s = time.perf_counter() - t_prep
        index = [i for i, d in enumerate(decs) if d.route == "llm"]
        got = _ask_all(s, requests, latency_of, config.concurrency, f"{name} {key}", progress)
        answers[key] = dict(zip(index, got, strict=True))
        methods[key] = score(
            y, labels, answers[key], gate_s + prep_s, small_correct, strict=key == "llm"
        )
        if s.options.transfer is not None:
            saved = sum(_words_saved(r.text, r.variables.get("text", r.text)) for r in requests)
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
    llm_correct = np.array([llm_ans[i].is_right(labels[y[i]]) for i in range(n)])
    for key in DS_MODES:
        if key not in config.methods:
            continue
        transfer = PromptTransfer(gate, config.transfer_budget) if key == "ds-plus" else None
        ask(key, shunt(DS_MODES[key], transfer), decisions)

    routed = np.array([d.route == "llm" for d in decisions])
    k = int(routed.sum())
    outcomes = Outcomes(small_correct, llm_correct, llm_ans, gate_s)
    for key, router in ROUTERS.items():
        if key in config.methods:
            methods[key] = router(k, outcomes)
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
        "methods": {m: methods[m] for m in METHODS if m in methods},
        "groups": groups(test, answers, small_correct, y, labels),
        "curve": curve(conf, small_correct, llm_correct, config.curve_points),
        # per test input, for re-plotting and for other thresholds without asking again
        "per_input": {
            "confidence": [round(float(c), 5) for c in conf],
            "small_correct": [bool(v) for v in small_correct],
            "llm_correct": [bool(v) for v in llm_correct],
            "group": [e.group for e in test.examples],
        },
        "template": task.template,
    }


def run_bench(
    config: BenchConfig,
    llm: LLMCall,
    *,
    model: str,
    latency_of: Callable[[], float | None] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`bench_dataset` for every configured data set; returns the whole JSON report.

    Example:
        >>> report = run_bench(BenchConfig(datasets=("sst2",)), llm, model="m")  # doctest: +SKIP
    """
    out: dict[str, Any] = {"config": jsonable_config(config), "model": model, "datasets": {}}
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
            print(dataset_markdown(name, res))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _words_saved(original: str, shown: str) -> int:
    return max(0, len(original.split()) - len(shown.split()))


def _ask_all(
    shunt: Shunt,
    requests: Sequence[LLMRequest],
    latency_of: Callable[[], float | None] | None,
    concurrency: int,
    what: str,
    progress: bool,
) -> list[Answer]:
    """Ask every request with the shunt's own LLM through the engine (timed, retried and parsed
    there, not recorded); a failed or unreadable answer falls back to the gate."""

    def one(req: LLMRequest) -> Answer:
        res = shunt.ask(req, record=False)
        # a cached answer costs what it cost when it was bought (read in this thread)
        cost = latency_of() if latency_of is not None and res.error is None else None
        reply = res.reply
        return Answer(
            res.label,
            res.source,
            (reply.prompt_tokens or 0) if reply is not None else 0,
            (reply.completion_tokens or 0) if reply is not None else 0,
            (res.latency_s or 0.0) if cost is None else cost,
        )

    if not requests:
        return []
    bar = _bar(len(requests), what, progress)
    out: list[Answer] = []
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
