"""The drift alarm: live gate confidences against the calibration ones, tested sequentially.

The test: every ``step`` inputs, a two-sample Kolmogorov-Smirnov test between the last
``window`` live confidences and the calibration sample's. The j-th test runs at level
``alpha * 6 / (pi^2 j^2)`` (an alpha-spending schedule whose levels sum to ``alpha``), so by
Bonferroni the chance of any false alarm over an unbounded stream of inputs exchangeable with
the calibration sample is at most ``alpha``. The LLM share is a function of the same
distribution (the share below δ), so a shift in it moves the KS statistic too; the alarm
reports both.

What it does not see: a change that leaves the confidences alone (the gate just as sure, but
wrong more often); audits (``audit_rate``) measure that.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["DriftAlarm", "DriftMonitor", "DriftWarning"]


class DriftWarning(UserWarning):
    """The live gate confidences no longer look like the calibration sample's."""


@dataclass(frozen=True)
class DriftAlarm:
    """One alarm.

    Attributes:
        at: inputs seen when it fired.
        statistic: the KS distance between the window and the calibration sample.
        pvalue: its p-value, below ``level``.
        level: the level the test ran at (its share of the alpha budget).
        live_llm_share / calibration_llm_share: the share below δ in the window and in the
            calibration sample.
    """

    at: int
    statistic: float
    pvalue: float
    level: float
    live_llm_share: float
    calibration_llm_share: float

    def describe(self) -> str:
        return (
            f"gate confidences drifted after {self.at} inputs (KS {self.statistic:.3f}, "
            f"p = {self.pvalue:.2g} < {self.level:.2g}); LLM share {self.live_llm_share:.1%} "
            f"live vs {self.calibration_llm_share:.1%} at calibration: re-calibrate"
        )


class DriftMonitor:
    """Watches a stream of gate confidences (see the module docstring).

    Args:
        reference: the calibration sample's confidences.
        threshold: δ, to report the LLM share.
        alpha: the false-alarm probability over the whole stream.
        window: live confidences per test.
        step: inputs between tests.
        warn: raise a :class:`DriftWarning` when the alarm first fires.

    Example:
        >>> monitor = DriftMonitor([0.9, 0.95, 0.99] * 100, threshold=0.9)
        >>> monitor.observe([0.97] * 10) is None
        True
    """

    def __init__(
        self,
        reference: Sequence[float] | np.ndarray,
        *,
        threshold: float = 0.9,
        alpha: float = 0.05,
        window: int = 200,
        step: int = 50,
        warn: bool = True,
    ) -> None:
        ref = np.sort(np.asarray(reference, dtype=float))
        if ref.size < 20:
            raise ConfigError(f"a drift reference needs at least 20 confidences, got {ref.size}")
        if not 0.0 < alpha < 1.0 or window < 20 or step < 1:
            raise ConfigError("drift alpha must be in (0, 1), window >= 20 and step >= 1")
        self.reference = ref
        self.threshold, self.alpha, self.window, self.step = threshold, alpha, window, step
        self.warn = warn
        self.live: deque[float] = deque(maxlen=window)
        self.seen = 0
        self.tests = 0
        self.alarm: DriftAlarm | None = None
        self._ref_share = float((ref < threshold).mean())

    def level(self, j: int) -> float:
        """The j-th test's level (``sum_j level(j) = alpha``)."""
        return self.alpha * 6.0 / (math.pi**2 * j * j)

    def observe(self, confidences: Iterable[float]) -> DriftAlarm | None:
        """Feed live confidences; returns the alarm when it fires now (only the first time)."""
        fired = None
        for c in confidences:
            self.live.append(float(c))
            self.seen += 1
            due = self.seen >= self.window and (self.seen - self.window) % self.step == 0
            if due and self.alarm is None:
                fired = self._test()
        return fired

    def _test(self) -> DriftAlarm | None:
        self.tests += 1
        live = np.fromiter(self.live, dtype=float)
        from scipy import stats  # here, not above: `import datashunt` stays light

        res = stats.ks_2samp(live, self.reference, method="asymp")
        level = self.level(self.tests)
        if float(res.pvalue) >= level:
            return None
        share = float((live < self.threshold).mean())
        stat, p = float(res.statistic), float(res.pvalue)
        self.alarm = DriftAlarm(self.seen, stat, p, level, share, self._ref_share)
        if self.warn:
            warnings.warn(self.alarm.describe(), DriftWarning, stacklevel=3)
        return self.alarm
