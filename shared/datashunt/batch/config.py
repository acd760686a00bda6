"""The one validated configuration of a batch job."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from ..llm.retry import RetryPolicy
from ..policy import validate_labels

__all__ = ["BatchConfig", "Engine"]

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class BatchConfig:
    """What a batch job reads, how it routes, whom it asks and where it writes.

    Attributes:
        data: the input file (``.csv``, ``.jsonl``/``.json``, ``.parquet``).
        out: the output Parquet file (one row per input row).
        gate: the gate directory (a calibrated policy beside it, or ``delta``/``budget``) ...
        labels: ... or, with no gate yet, the labels the LLM chooses from: a *shadow* job.
            No gate pass; every valid row goes to the LLM as a user's chain would ask it
            (every label on offer, no hint: :meth:`Shunt.shadow <datashunt.Shunt.shadow>`), and
            each answer is recorded in ``store`` with its parsed label, for
            ``datashunt bootstrap`` to train the first gate on. ``budget``, ``delta`` and the
            gate's options (``backend``, ``device``, ``workers``, ``prompt_mode``) do not apply;
            with ``engine="ray"`` the job runs as a local one (pass 2 always runs here).
        llm_url / llm_model: an OpenAI-compatible endpoint and model name ...
        llm_column: ... or a column of the input holding recorded answers (no paid calls).
        engine: ``"local"`` (one process) or ``"ray"`` (Ray Data, ``workers`` gate actors).
        budget: the LLM share to meet: δ is chosen from the global confidence ranking so that
            exactly ``round(budget * n)`` valid rows go to the LLM (ties broken by input id).
        delta: a fixed δ instead (``confidence < delta`` goes to the LLM). Neither: the
            policy's δ.
        store: the call store / LLM cache URL or SQLite path (default ``<work>/calls.sqlite``).
        text_col / id_col: the input's columns (no ``id_col`` column: the row number is the id).
        workers: Ray actors holding the gate (the ``concurrency`` of ``map_batches``).
        batch_size: rows per gate batch.
        backend: the gate's runtime, ``"torch"``, ``"int8"`` (torch dynamic int8), ``"bf16"``
            (torch bfloat16), ``"onnx"`` or ``"onnx-int8"`` (the fastest on a CPU).
        device: where the torch gate runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
            (on Ray each gate actor then asks for one GPU).
        max_concurrency: LLM calls in flight at once.
        rate: at most this many LLM calls started per second (``None``: no limit).
        chunk: LLM rows per checkpoint file (a killed run redoes at most one chunk, from cache).
        work_dir: where pass 1 and the checkpoints go (default ``<out>.work``).
        prompt_mode: the prompt (see :mod:`datashunt.prompts`).
        ray_address: an existing Ray cluster (default: the running one, else a local one).
        retry: how each LLM call is retried and its overall deadline (default
            :class:`~datashunt.llm.RetryPolicy`: 3 attempts).
        stop_after_failures: stop asking once this many calls in a row have failed after
            their retries (a dead endpoint); the output is still written, the rows left marked.

    Example:
        >>> BatchConfig(Path("in.csv"), Path("out.parquet"), Path("runs/gate"),
        ...             llm_column="llm_label", budget=0.3).engine
        'local'
        >>> BatchConfig(Path("in.csv"), Path("out.parquet"), labels=("neg", "pos"),
        ...             llm_column="llm_label", store="calls.sqlite").shadow
        True
    """

    data: Path
    out: Path
    gate: Path | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    llm_column: str | None = None
    engine: Engine = "local"
    budget: float | None = None
    delta: float | None = None
    store: str | None = None
    text_col: str = "text"
    id_col: str = "id"
    workers: int = 1
    batch_size: int = 256
    backend: str = "torch"
    device: str = "cpu"
    max_concurrency: int = 16
    rate: float | None = None
    chunk: int = 256
    work_dir: Path | None = None
    prompt_mode: str = "soft"
    ray_address: str | None = None
    retry: RetryPolicy | None = None
    stop_after_failures: int = 20
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._check_gate_or_labels()
        if (self.llm_column is None) == (self.llm_url is None):
            raise ConfigError("give either --llm-url with --llm-model, or --llm-column (not both)")
        if self.llm_url is not None and not self.llm_model:
            raise ConfigError("--llm-url needs --llm-model: the model name is in the cache key")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.budget is not None and self.delta is not None:
            raise ConfigError("give --budget or --delta, not both")
        if self.budget is not None and not (math.isfinite(self.budget) and 0 <= self.budget <= 1):
            raise ConfigError(f"budget must be in [0, 1], got {self.budget}")
        if self.delta is not None and not (math.isfinite(self.delta) and 0 <= self.delta <= 1):
            raise ConfigError(f"delta must be in [0, 1], got {self.delta}")
        if self.backend not in ("torch", "int8", "bf16", "onnx", "onnx-int8"):
            raise ConfigError(
                f"backend must be torch, int8, bf16, onnx or onnx-int8, got {self.backend!r}"
            )
        if self.device != "cpu" and self.backend not in ("torch", "bf16"):
            raise ConfigError(
                f"--device {self.device} runs the torch backend: int8 and onnx are CPU paths"
            )
        for name in ("workers", "batch_size", "max_concurrency", "chunk", "stop_after_failures"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate must be > 0 calls per second, got {self.rate}")
        if self.out.suffix.lower() != ".parquet":
            raise ConfigError(f"--out must name a .parquet file, got {str(self.out)!r}")

    def _check_gate_or_labels(self) -> None:
        if self.gate is None and self.labels is None:
            raise ConfigError(
                "a batch job needs --gate DIR (a trained gate), or --labels a,b,... when there is "
                "no gate yet (a shadow job: every row to the LLM, its answers recorded in --store "
                "for `datashunt bootstrap` to train the first gate)"
            )
        if self.gate is not None and self.labels is not None:
            raise ConfigError(
                "give --gate or --labels, not both: with --gate the gate answers the rows it is "
                "sure of; --labels (no gate yet) sends every row to the LLM"
            )
        if self.labels is None:
            return
        labels = validate_labels(self.labels)
        if len(labels) < 2:
            raise ConfigError(f"--labels needs at least two labels, e.g. a,b; got {list(labels)}")
        object.__setattr__(self, "labels", labels)
        for name in ("budget", "delta"):
            if getattr(self, name) is not None:
                raise ConfigError(
                    f"--{name} sets the gate's share of the rows, and a shadow job (--labels, no "
                    f"--gate) has no gate: every row goes to the LLM. Drop --{name}, or pass "
                    "--gate DIR instead of --labels"
                )

    @property
    def shadow(self) -> bool:
        """No gate: every valid row goes to the LLM (see ``labels``)."""
        return self.gate is None

    @property
    def work(self) -> Path:
        """Pass 1's output and the LLM checkpoints."""
        return self.work_dir or self.out.with_name(self.out.name + ".work")

    @property
    def store_url(self) -> str:
        return self.store or str(self.work / "calls.sqlite")
