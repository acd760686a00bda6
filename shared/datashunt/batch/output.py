"""A job's files: pass 2's checkpoints and the output table (one row per input row).

A checkpoint (``llm/part-*.parquet``) holds a chunk of pass 2's rows; the output joins them to
pass 1's probabilities. A shadow job (no gate) has no probabilities: its gate columns are null.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .ask import atomic_name
from .budget import Routing
from .score import ROW, _pyarrow

__all__ = ["assemble", "part_schema", "read_part", "write_part"]


def part_schema() -> Any:
    """Pass 2's checkpoints, typed: a column of nulls (no row failed) is still a string column,
    so that checkpoints with and without failures read back as one table."""
    pa = _pyarrow()
    return pa.schema(
        [
            (ROW, pa.int64()),
            ("label", pa.string()),
            ("source", pa.string()),
            ("candidates", pa.list_(pa.string())),
            ("llm_answer", pa.string()),
            ("error", pa.string()),
        ]
    )


def write_part(cols: dict[str, Any], path: Path) -> None:
    """Write one checkpoint under a temporary name, then rename it into place."""
    pa = _pyarrow()
    tmp = atomic_name(path)
    pa.parquet.write_table(pa.table(cols, schema=part_schema()), tmp)
    os.replace(tmp, path)


def read_part(path: Path) -> dict[str, list[Any]]:
    """A checkpoint as columns; one written untyped by an earlier release is cast."""
    table = _pyarrow().parquet.read_table(path)
    return dict(table.select(part_schema().names).cast(part_schema()).to_pydict())


def assemble(
    table: Any,
    scored: Any,
    probs: np.ndarray,
    conf: np.ndarray,
    routing: Routing,
    labels: tuple[str, ...],
    parts: Path,
    *,
    shadow: bool = False,
) -> Any:
    """One row per input row, in input order.

    Args:
        shadow: no gate ran (its uniform stand-in only marked the valid rows): ``confidence``
            and ``gate_label`` are null, and a row without an LLM answer has no label.
    """
    pa = _pyarrow()
    n = table.num_rows
    names = np.asarray(labels, dtype=object)
    valid = np.isfinite(conf)
    top = np.argmax(np.nan_to_num(probs, nan=-1.0).reshape(n, len(names)), axis=1)
    gate_label = names[top]
    gate_label[~valid | shadow] = None
    label = gate_label.copy()
    route = np.where(valid, np.where(routing.to_llm, "llm", "small"), "invalid").astype(object)
    source = route.copy()
    candidates: list[list[str] | None] = [
        [str(g)] if v and not shadow else None for g, v in zip(gate_label, valid, strict=True)
    ]
    answer = np.full(n, None, dtype=object)
    error = np.asarray(scored.column("gate_error").to_pylist(), dtype=object)
    files = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    if files:
        llm: dict[str, list[Any]] = {name: [] for name in part_schema().names}
        for f in files:
            for name, values in read_part(f).items():
                llm[name].extend(values)
        idx = np.asarray(llm[ROW], dtype=np.int64)
        label[idx] = llm["label"]
        source[idx] = llm["source"]
        answer[idx] = llm["llm_answer"]
        error[idx] = llm["error"]
        for i, c in zip(idx, llm["candidates"], strict=True):
            candidates[i] = c
    confidence = pa.array(np.where(valid, conf, np.nan), mask=np.full(n, shadow))
    return pa.table(
        {
            "id": table.column("id"),
            "label": pa.array(label.tolist(), pa.string()),
            "route": pa.array(route.tolist(), pa.string()),
            "source": pa.array(source.tolist(), pa.string()),
            "confidence": confidence,
            "gate_label": pa.array(gate_label.tolist(), pa.string()),
            "candidates": pa.array(candidates, pa.list_(pa.string())),
            "llm_answer": pa.array(answer.tolist(), pa.string()),
            "error": pa.array(error.tolist(), pa.string()),
        }
    )
