"""Batch jobs: the shunt over a whole data set, locally or on Ray Data, budget-exact, resumable.

* :func:`run_batch_job` / :class:`BatchConfig`: pass 1 (the gate over every row, one model per
  worker), δ from the global confidence ranking (or given), pass 2 (the uncertain rows to the
  LLM through :meth:`~datashunt.engine.Shunt.ask`, cached by (model, prompt), checkpointed),
  one output row per input row. ``datashunt batch`` runs it from the command line. With no
  gate yet (``BatchConfig.labels``, ``--labels``: a shadow job) pass 1 is skipped and every
  valid row goes to the LLM as :meth:`~datashunt.engine.Shunt.shadow` asks it, each answer
  recorded for ``datashunt bootstrap``.
* :class:`GateScorer`: the per-batch gate function (Ray ``map_batches``, Spark ``mapInPandas``).
* :func:`route_by_budget`: exactly ``round(budget * n)`` rows to the LLM, ties broken by id.

Importing this package loads neither Ray nor pyarrow: they are imported when a job runs.
"""

from __future__ import annotations

from .budget import Routing, route_by_budget, route_by_delta
from .config import BatchConfig, Engine
from .job import BatchSummary, run_batch_job
from .score import GateScorer, read_input

__all__ = [
    "BatchConfig",
    "BatchSummary",
    "Engine",
    "GateScorer",
    "Routing",
    "read_input",
    "route_by_budget",
    "route_by_delta",
    "run_batch_job",
]
