"""δ from the global confidence ranking, so that the LLM share is the budget, ties included."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Routing", "route_by_budget", "route_by_delta"]


@dataclass(frozen=True)
class Routing:
    """Which valid rows the LLM gets.

    Attributes:
        to_llm: a boolean per row (invalid rows: ``False``).
        delta: the δ in force: every row below it goes to the LLM, none above it does.
        tied: rows whose confidence equals δ that the tie-break sent to the LLM.
    """

    to_llm: np.ndarray
    delta: float
    tied: int


def _tiebreak(ids: Sequence[str]) -> np.ndarray:
    """A fixed pseudo-random order of the ids (not the input order: a sorted file would send
    its first rows of each tie to the LLM)."""
    return np.asarray(
        [int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") for i in ids],
        dtype=np.uint64,
    )


def route_by_budget(confidence: np.ndarray, ids: Sequence[str], budget: float) -> Routing:
    """Send exactly ``round(budget * n_valid)`` rows to the LLM: the least confident, and among
    rows tied at the cut, those first in a fixed hash order of their ids.

    A quantile of the confidences alone cannot do this: a data set with repeated texts, or a
    gate that saturates at 1.0, puts thousands of rows on one value.

    Args:
        confidence: one per row; NaN marks an invalid row (never sent).
        ids: the rows' ids (the tie-break).
        budget: the share in [0, 1].
    """
    conf = np.asarray(confidence, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(conf))
    m = int(round(budget * len(valid)))
    to_llm = np.zeros(len(conf), dtype=bool)
    if m == 0:
        low = float(conf[valid].min()) if len(valid) else 0.0
        return Routing(to_llm, low, 0)
    keys = _tiebreak([ids[int(i)] for i in valid])
    order = valid[np.lexsort((keys, conf[valid]))]  # by confidence, then by the hash
    chosen = order[:m]
    to_llm[chosen] = True
    delta = float(conf[chosen[-1]])
    tied = int(np.sum(conf[chosen] == delta))
    if m < len(valid) and conf[order[m]] > delta:
        # no tie at the cut: δ can sit between the two, so `confidence < δ` alone routes
        delta = float(conf[order[m]])
        tied = 0
    return Routing(to_llm, delta, tied)


def route_by_delta(confidence: np.ndarray, delta: float) -> Routing:
    """Rows with ``confidence < delta`` go to the LLM (the shunt's own rule)."""
    conf = np.asarray(confidence, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        to_llm = np.isfinite(conf) & (conf < delta)
    return Routing(to_llm, float(delta), 0)
