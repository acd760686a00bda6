"""What every run in ``bench/`` shares: paths, samples, the machine, memory, the command line.

The experiments themselves are thin: the measuring is the library's (:mod:`datashunt.benchmark`,
:mod:`datashunt.training`); this module holds only what the scripts would otherwise each
write again.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from datashunt.data import Dataset, Example

__all__ = [
    "RESULTS",
    "ROOT",
    "PeakRSS",
    "command",
    "csv_list",
    "machine",
    "peak_rss_mb",
    "pct",
    "sample",
    "timed",
]

#: The repository root and the folder the committed figures go to.
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

T = TypeVar("T")


def sample(
    data: Dataset,
    n: int,
    seed: int,
    *,
    keep: Callable[[Example], bool] | None = None,
    in_file_order: bool = False,
) -> Dataset:
    """``n`` examples drawn at random (a permutation with ``seed``): in random order, or in
    the file's order with ``in_file_order``; ``keep`` filters the examples first."""
    ex = [e for e in data.examples if keep is None or keep(e)]
    idx = np.random.default_rng(seed).permutation(len(ex))[:n]
    if in_file_order:
        idx = np.sort(idx)
    return Dataset(tuple(ex[i] for i in idx), data.labels, data.name)


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal, for the tables (``-`` for none)."""
    return "-" if x is None else f"{100 * x:.1f}"


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (a comma-separated option)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def command(module: str, argv: Sequence[str] | None) -> str:
    """The command line a result was made with (``python -m bench.X ARGS``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([f"python -m {module}", *args])


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a figure was measured on (CPU count, Python), with ``extra`` notes."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), **extra}


def peak_rss_mb(children: bool = False) -> float:
    """The peak resident size so far, in MiB, of this process (or of its largest child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    # ru_maxrss is in KiB on Linux
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


class PeakRSS:
    """The peak summed RSS of this process and all its descendants, sampled every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += int(p.memory_info().rss)
            except Exception:  # noqa: S112 - a process that just ended
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.2)

    @contextmanager
    def watch(self) -> Iterator[PeakRSS]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._sample())


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """``fn()``, its wall time in seconds and the peak RSS (MiB) of this process tree."""
    with PeakRSS().watch() as mem:
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
    return out, wall, round(mem.peak / 2**20, 1)
