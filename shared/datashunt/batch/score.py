"""Pass 1: the gate's probabilities for every row, per batch, locally or on Ray Data.

:class:`GateScorer` is the per-batch function: a callable class that loads the gate once and
maps a batch (a dict of columns: Ray's ``batch_format="numpy"``, or a pandas DataFrame from
Spark's ``mapInPandas``) to the row positions and one probability column per label. The local
engine calls it over slices of the table; the Ray engine hands it to ``map_batches`` with an
actor pool of ``workers`` (``compute=ActorPoolStrategy(size=workers)``; Ray 2.51 deprecated
``concurrency=``), so each actor holds one model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataShuntError, InputError
from ..gates import load_gate
from ..inputs import validate_text

__all__ = [
    "BACKENDS",
    "GateScorer",
    "check_texts",
    "prob_columns",
    "read_input",
    "score_local",
    "score_ray",
    "score_shadow",
]

ROW = "_row"  # the input position: restores the order whatever the engine did with it
#: ``--backend`` names and the ``HFGate`` options they stand for
BACKENDS: dict[str, dict[str, str]] = {
    "torch": {},
    "int8": {"quantize": "int8"},
    "bf16": {"quantize": "bf16"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "quantize": "int8"},
}


def prob_columns(k: int) -> list[str]:
    """The probability columns of pass 1's output, in label order."""
    return [f"p{j}" for j in range(k)]


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - loads the submodule
    except ImportError as exc:
        raise DataShuntError("batch jobs need pyarrow: pip install 'datashunt[batch]'") from exc
    return pyarrow


def read_input(path: Path, text_col: str, id_col: str) -> Any:
    """The input as a ``pyarrow.Table`` with ``_row``, ``id`` (string) and ``text`` columns.

    Raises:
        ConfigError: an unknown file type or a missing text column.
    """
    pa = _pyarrow()
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError(f"no input file at {str(path)!r}")
    if suffix == ".parquet":
        table = pa.parquet.read_table(path)
    elif suffix == ".csv":
        import pyarrow.csv

        table = pyarrow.csv.read_csv(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        import pyarrow.json

        table = pyarrow.json.read_json(path)
    else:
        raise ConfigError(f"--data must be .csv, .jsonl or .parquet, got {path.name!r}")
    if text_col not in table.column_names:
        raise ConfigError(
            f"{path.name} has no column {text_col!r} (columns: {', '.join(table.column_names)}):"
            " pass --text-col"
        )
    n = table.num_rows
    if id_col in table.column_names:
        ids = table.column(id_col).cast(pa.string())
        if ids.null_count or len(set(ids.to_pylist())) != n:
            raise ConfigError(f"column {id_col!r} must hold a unique, non-empty id per row")
    else:
        ids = pa.array([str(i) for i in range(n)])
    texts = table.column(text_col).cast(pa.string())
    return pa.table({ROW: pa.array(np.arange(n, dtype=np.int64)), "id": ids, "text": texts})


class GateScorer:
    """Loads the gate once; maps a batch of rows to their probabilities.

    Args:
        gate_dir: the gate directory.
        backend: a key of :data:`BACKENDS` (``"torch"``, ``"int8"``, ``"bf16"``, ``"onnx"``,
            ``"onnx-int8"``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (torch backend only); on a
            GPU the forward passes take up to 512 rows and 131,072 padded tokens at once.
        max_chars: longer texts are invalid rows (an error in the output, no gate pass).

    A row whose text is empty or too long gets NaN probabilities and an ``error``; the batch
    goes on.

    Example:
        >>> scorer = GateScorer("runs/gate")  # doctest: +SKIP
        >>> batch = {"_row": np.arange(2), "text": np.array(["good", "bad"])}
        >>> scorer(batch)["p0"]  # doctest: +SKIP
    """

    def __init__(
        self,
        gate_dir: str | Path,
        backend: str = "torch",
        max_chars: int = 20_000,
        device: str = "cpu",
    ) -> None:
        options: dict[str, Any] = {}
        if device != "cpu":
            options |= {"device": device, "batch_size": 512, "max_batch_tokens": 131_072}
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.gate = load_gate(gate_dir, **options, **BACKENDS[backend])
        self.max_chars = max_chars

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        texts = list(batch["text"])
        good, errors = check_texts(texts, self.max_chars)
        probs = np.full((len(texts), len(self.gate.labels)), np.nan)
        if good:
            probs[good] = self.gate.predict_proba([texts[i] for i in good])
        return _scored(batch[ROW], probs, errors)


def check_texts(texts: list[Any], max_chars: int) -> tuple[list[int], list[str | None]]:
    """The positions of the valid texts, and an error for each invalid one (empty, too long,
    not text): such a row goes neither to the gate nor to the LLM."""
    errors: list[str | None] = [None] * len(texts)
    good: list[int] = []
    for i, t in enumerate(texts):
        try:
            validate_text(t, max_chars=max_chars)
            good.append(i)
        except InputError as exc:
            errors[i] = str(exc)
    return good, errors


def _scored(rows: Any, probs: np.ndarray, errors: list[str | None]) -> dict[str, np.ndarray]:
    out = {ROW: np.asarray(rows, dtype=np.int64)}
    out |= {c: probs[:, j] for j, c in enumerate(prob_columns(probs.shape[1]))}
    out["gate_error"] = np.asarray(errors, dtype=object)
    return out


def score_shadow(table: Any, k: int, max_chars: int = 20_000) -> Any:
    """Pass 1 of a job with no gate (a shadow job): no model runs; each valid row gets the
    uniform probabilities of :class:`~datashunt.engine.shadow.ShadowGate` (no opinion, so the
    shunt sends it to the LLM), an invalid one NaN and its error, as :class:`GateScorer`."""
    texts = table.column("text").to_pylist()
    good, errors = check_texts(texts, max_chars)
    probs = np.full((len(texts), k), np.nan)
    probs[good] = 1.0 / k
    return _pyarrow().table(_scored(table.column(ROW).to_numpy(), probs, errors))


def score_local(
    table: Any, gate_dir: Path, backend: str, batch_size: int, device: str = "cpu"
) -> Any:
    """Pass 1 in this process: the scorer over slices of ``table``."""
    pa = _pyarrow()
    scorer = GateScorer(gate_dir, backend, device=device)
    parts = []
    for start in range(0, table.num_rows, batch_size):
        piece = table.slice(start, batch_size)
        out = scorer({ROW: piece.column(ROW).to_numpy(), "text": piece.column("text").to_pylist()})
        parts.append(pa.table(out))
    if not parts:
        k = len(scorer.gate.labels)
        cols = {ROW: pa.array([], pa.int64())}
        cols |= {c: pa.array([], pa.float64()) for c in prob_columns(k)}
        cols["gate_error"] = pa.array([], pa.string())
        return pa.table(cols)
    return pa.concat_tables(parts)


def score_ray(
    table: Any,
    gate_dir: Path,
    backend: str,
    batch_size: int,
    workers: int,
    out_dir: Path,
    address: str | None = None,
    device: str = "cpu",
) -> Any:
    """Pass 1 on Ray Data: ``map_batches(GateScorer)`` on ``workers`` actors, written as Parquet
    to ``out_dir`` by the workers, then read back here. With a GPU ``device`` each actor
    asks Ray for one GPU (``num_gpus=1``)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray: pip install 'datashunt[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    with warnings.catch_warnings():
        # Ray 2.60's default context reads its own deprecated use_push_based_shuffle
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # blocks cut here, not by ds.repartition: that is a shuffle whose tasks would wait for the
    # CPUs the actor pool holds (a hang on a cluster as small as the pool)
    rows = table.select([ROW, "text"])
    n_blocks = max(workers * 4, rows.num_rows // max(batch_size * 8, 1))
    step = max(1, -(-rows.num_rows // n_blocks))
    ds = ray.data.from_arrow([rows.slice(i, step) for i in range(0, max(rows.num_rows, 1), step)])
    scored = ds.map_batches(
        GateScorer,
        fn_constructor_kwargs={"gate_dir": str(gate_dir), "backend": backend, "device": device},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),  # one gate per actor, loaded once
        num_cpus=1,
        num_gpus=1 if device.startswith("cuda") else 0,
    )
    # materialised first: the actors then let go of every CPU before the write tasks need one
    # (on a cluster as small as its actor pool, a fused write would wait on them for ever)
    scored.materialize().write_parquet(str(out_dir))
    return _pyarrow().parquet.read_table(out_dir)
