"""A batch job: read, pass 1 (gate), route to a budget, pass 2 (LLM), write one row per input.

The work directory (``<out>.work``) holds what a restart needs: ``job.json`` (what the job
is, so that a directory of another job is refused), ``gate/`` (pass 1's probabilities, renamed
into place when complete), ``llm/part-*.parquet`` (pass 2's checkpoints) and the store with
the LLM cache. Running a job again, finished or killed, redoes only what is missing.

With no gate yet (``BatchConfig.labels``: a shadow job) there is no pass 1: every valid row
goes to the LLM, and the store's answers are what ``datashunt bootstrap`` trains the first gate
on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.shadow import shadow_policy
from ..errors import ConfigError, LLMError
from ..policy import ShuntPolicy
from .ask import Breaker, ask_chunks, atomic_name, build_shunt
from .budget import Routing, route_by_budget, route_by_delta
from .config import BatchConfig
from .output import assemble, read_part, write_part
from .score import ROW, _pyarrow, prob_columns, read_input, score_local, score_ray, score_shadow

__all__ = ["BatchSummary", "run_batch_job"]


@dataclass(frozen=True)
class BatchSummary:
    """What a job did.

    Attributes:
        rows / valid: input rows, and those the gate could read.
        llm_rows: rows routed to the LLM; ``llm_share`` = ``llm_rows / valid``.
        delta / tied: the δ in force and the rows tied at it that went to the LLM.
        paid_calls: LLM calls this run made (cache misses; retries counted once each call).
        cache_hits: answers found in the cache (paid for by an earlier run).
        resumed_chunks: pass 2 checkpoints an earlier run had written.
        gate_s / llm_s / total_s: wall time of pass 1, pass 2 and the whole job, this run.
        gate_reused: pass 1's output came from an earlier run.
        failed_rows: rows whose LLM call failed or was not made (their ``error`` says why;
            the same command run again asks exactly these).
        reasked_rows: rows that had failed in an earlier run and were asked again in this one.
        unreadable_rows: rows the LLM answered with no label the parser could read (the gate's
            label stands; in a shadow job the row has no label and its ``error`` says why).
        shadow: no gate (``--labels``): every valid row went to the LLM.
    """

    rows: int
    valid: int
    llm_rows: int
    llm_share: float
    delta: float
    tied: int
    paid_calls: int
    cache_hits: int
    resumed_chunks: int
    gate_s: float
    llm_s: float
    total_s: float
    gate_reused: bool
    failed_rows: int = 0
    reasked_rows: int = 0
    unreadable_rows: int = 0
    shadow: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _job_key(cfg: BatchConfig) -> dict[str, Any]:
    st = cfg.data.stat()
    key: dict[str, Any] = {
        "data": str(cfg.data.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "gate": str(cfg.gate.resolve()) if cfg.gate is not None else None,
        "backend": cfg.backend,
        "text_col": cfg.text_col,
        "id_col": cfg.id_col,
        "budget": cfg.budget,
        "delta": cfg.delta,
        "model": cfg.llm_model or f"column:{cfg.llm_column}",
        "prompt_mode": cfg.prompt_mode,
    }
    if cfg.labels is not None:
        # a shadow job: no gate options; the labels make the prompt
        key |= {"backend": None, "prompt_mode": "none", "labels": list(cfg.labels)}
    return key


def _claim_work_dir(cfg: BatchConfig) -> None:
    work = cfg.work
    work.mkdir(parents=True, exist_ok=True)
    key = _job_key(cfg)
    path = work / "job.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != key:
            changed = sorted(k for k in key if old.get(k) != key[k])
            raise ConfigError(
                f"{work} holds another job's work (it differs in {', '.join(changed)}): delete "
                "it to start afresh, or pass another --work-dir"
            )
        return
    path.write_text(json.dumps(key, indent=1), encoding="utf-8")


def _pass1(cfg: BatchConfig, gate: Path, table: Any) -> tuple[Any, bool]:
    pa = _pyarrow()
    done = cfg.work / "gate"
    if done.is_dir():
        return pa.parquet.read_table(done), True
    tmp = cfg.work / f"gate.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.engine == "ray":
        scored = score_ray(
            table,
            gate,
            cfg.backend,
            cfg.batch_size,
            cfg.workers,
            tmp,
            cfg.ray_address,
            cfg.device,
        )
    else:
        scored = score_local(table, gate, cfg.backend, cfg.batch_size, cfg.device)
        tmp.mkdir(parents=True)
        pa.parquet.write_table(scored, tmp / "part-0.parquet")
    os.replace(tmp, done)
    return scored, False


def _llm(cfg: BatchConfig, table: Any) -> tuple[Any, str]:
    if cfg.llm_column is not None:
        from ..llm.replay import ColumnReplayLLM

        data = read_input(cfg.data, cfg.llm_column, cfg.id_col)  # the column as 'text'
        answers = {
            t: ("" if a is None else str(a))
            for t, a in zip(
                table.column("text").to_pylist(), data.column("text").to_pylist(), strict=True
            )
        }
        model = f"recorded:{cfg.data.name}:{cfg.llm_column}"
        return ColumnReplayLLM(answers, model=model), model
    from ..llm.client import OpenAICompatLLM

    assert cfg.llm_url is not None and cfg.llm_model is not None  # noqa: S101 - config checks
    return OpenAICompatLLM(cfg.llm_url, cfg.llm_model), cfg.llm_model


def run_batch_job(cfg: BatchConfig) -> BatchSummary:
    """Run (or resume) a batch job; writes ``cfg.out`` and returns what it did.

    A row whose LLM call failed is written with the gate's label (``source`` ``"fallback"``)
    and its ``error``; it is not done: the next run of the same job asks it again, and only it.

    A shadow job (``cfg.labels``, no gate) skips pass 1 and sends every valid row to the LLM
    through :meth:`Shunt.shadow <datashunt.Shunt.shadow>`'s requests, each answer recorded in
    the store with its parsed label; its output has the same columns, the gate's null. A row
    without a readable answer has no label: its ``error`` says why (an unreadable answer is
    done, a failed call is asked again by the next run).

    Raises:
        ConfigError: a bad input, a missing policy with neither budget nor delta, or a work
            directory that belongs to another job.
        LLMError: ``cfg.stop_after_failures`` calls failed in a row (a dead endpoint): the job
            stopped asking, after writing the output with the unanswered rows marked.
    """
    t0 = time.perf_counter()
    pa = _pyarrow()
    table = read_input(cfg.data, cfg.text_col, cfg.id_col)
    _claim_work_dir(cfg)
    if cfg.gate is not None:
        policy = _policy(cfg, cfg.gate)
        scored, reused = _pass1(cfg, cfg.gate, table)
    else:  # a shadow job: no gate, every valid row to the LLM (δ = 1 > any confidence)
        policy = shadow_policy(cfg.labels or ())
        scored, reused = score_shadow(table, len(policy.labels)), False
    k = len(policy.labels)
    scored = scored.sort_by(ROW)
    gate_s = time.perf_counter() - t0
    probs = np.column_stack([scored.column(c).to_numpy() for c in prob_columns(k)])
    conf = np.max(np.nan_to_num(probs, nan=-1.0), axis=1)
    conf[~np.all(np.isfinite(probs), axis=1)] = np.nan
    ids = table.column("id").to_pylist()
    routing = _route(cfg, policy, conf, ids)
    policy = policy.with_(threshold=routing.delta)

    t1 = time.perf_counter()
    llm, model = _llm(cfg, table)
    shunt, cached, cache = build_shunt(
        policy.labels,
        policy,
        llm,
        model,
        cfg.store_url,
        rate=cfg.rate,
        prompt_mode=cfg.prompt_mode,
        max_concurrency=cfg.max_concurrency,
        retry=cfg.retry,
        shadow=cfg.shadow,
    )
    rows = np.flatnonzero(routing.to_llm)
    texts = table.column("text").to_pylist()
    breaker = Breaker(cfg.stop_after_failures)
    asked = ask_chunks(
        shunt,
        cache,
        model,
        rows,
        [texts[i] for i in rows],
        probs[rows],
        cfg.work / "llm",
        cfg.chunk,
        (write_part, read_part),
        breaker,
    )
    llm_s = time.perf_counter() - t1

    parts = cfg.work / "llm"
    out = assemble(table, scored, probs, conf, routing, policy.labels, parts, shadow=cfg.shadow)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_name(cfg.out)
    pa.parquet.write_table(out, tmp)
    os.replace(tmp, cfg.out)
    valid = int(np.isfinite(conf).sum())
    summary = BatchSummary(
        rows=table.num_rows,
        valid=valid,
        llm_rows=len(rows),
        llm_share=len(rows) / valid if valid else 0.0,
        delta=routing.delta,
        tied=routing.tied,
        paid_calls=cached.misses,
        cache_hits=cached.hits,
        resumed_chunks=asked.resumed,
        gate_s=gate_s,
        llm_s=llm_s,
        total_s=time.perf_counter() - t0,
        gate_reused=reused,
        failed_rows=asked.failed,
        reasked_rows=asked.reasked,
        unreadable_rows=_unreadable(out),
        shadow=cfg.shadow,
    )
    (cfg.work / "summary.json").write_text(json.dumps(summary.to_json(), indent=1), "utf-8")
    if breaker.tripped:
        raise LLMError(
            f"stopped asking the LLM: {breaker.reason}; {cfg.out} is written, its error "
            f"column marks the {asked.failed} rows without an answer: fix the endpoint and run "
            "the same command again to ask exactly those rows"
        )
    return summary


def _policy(cfg: BatchConfig, gate: Path) -> ShuntPolicy:
    try:
        return ShuntPolicy.load(gate)
    except ConfigError:
        if cfg.budget is None and cfg.delta is None:
            raise
    # no calibrated policy: the labels from the model's config, δ from --budget / --delta
    config = json.loads((gate / "config.json").read_text(encoding="utf-8"))
    labels = [str(config["id2label"][str(i)]) for i in range(len(config["id2label"]))]
    return ShuntPolicy(labels=tuple(labels))


def _route(cfg: BatchConfig, policy: ShuntPolicy, conf: np.ndarray, ids: list[str]) -> Routing:
    if cfg.budget is not None:
        return route_by_budget(conf, ids, cfg.budget)
    return route_by_delta(conf, cfg.delta if cfg.delta is not None else policy.threshold)


def _unreadable(out: Any) -> int:
    """Rows the LLM answered with nothing the parser could read."""
    rows = out.select(["source", "llm_answer"]).to_pylist()
    return sum(r["llm_answer"] is not None and r["source"] == "fallback" for r in rows)
