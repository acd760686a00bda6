"""Quality and cost of the shunt on labelled data: the paper's table, on open data.

For each data set: the small model alone, the LLM alone, the shunt without pruning, with soft
and with hard pruning, and DS+ (soft and hard pruning plus Prompt Transferring); a random router
and an oracle router sending the same share of inputs to the LLM. Columns: accuracy, LLM-call
rate, LLM tokens, wall time. δ is chosen on dev (temperature and threshold, with
:func:`datashunt.calibrate`), every figure is measured on test. A δ sweep gives the accuracy
against LLM-call-rate curve.

Costs are counted honestly under caching: LLM answers are cached by (model, prompt) in an
:class:`~datashunt.llm.LLMCache`, so a re-run pays nothing, and each answer keeps the latency
and tokens it cost when it was bought; the wall-time column is the gate's pass plus the LLM
latencies of the calls a method makes, as if made one after another.

Modules: :mod:`.tasks` (methods, prompts per data set, :class:`BenchConfig`), :mod:`.runner`
(the gate, every method, the report), :mod:`.baselines` (scoring, random and oracle routers,
the δ-sweep curve), :mod:`.report` (markdown, PNG, JSON) and :mod:`.cli` (``datashunt bench``).

Run it with ``datashunt bench`` (see ``--help``), or from Python::

    report = run_bench(BenchConfig(datasets=("sst2",), test_n=200), llm, model="gpt-4o-mini")
"""

from __future__ import annotations

from .baselines import Answer
from .report import markdown_report, plot_curves, write_json
from .runner import bench_dataset, prepare_gate, run_bench
from .tasks import METHOD_NAMES, METHODS, TASKS, BenchConfig, TaskSpec, task_for

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "TASKS",
    "Answer",
    "BenchConfig",
    "TaskSpec",
    "bench_dataset",
    "markdown_report",
    "plot_curves",
    "prepare_gate",
    "run_bench",
    "task_for",
    "write_json",
]
