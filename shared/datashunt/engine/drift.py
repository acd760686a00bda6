"""The drift alarm: live gate confidences, the LLM share and audits, tested sequentially.

Three tests, each over a sliding window of the live stream, run every ``step`` inputs (every
``audit_step`` audits):

* ``confidence``: a two-sample Kolmogorov-Smirnov test between the last ``window`` live gate
  confidences and the calibration sample's (asymptotic p-value, with the calibration sample's
  real size ``reference_n`` when the policy keeps only quantiles of it);
* ``llm_share``: Fisher's exact test (two-sided) of the share of those ``window`` inputs below δ
  against the calibration sample's share: the one figure of the distribution that sets the bill;
* ``audit``: Fisher's exact test (one-sided) of the LLM's disagreement with the gate on the last
  ``audit_window`` audits (``audit_rate``: confident inputs also put to the LLM) against a
  reference disagreement: ``audit_reference`` (disagreements, audits) when the user has one,
  else the first ``audit_burn_in`` audits of the stream. This is the test that sees a gate
  that is as sure as before but wrong more often, which no test of confidences can see.

Error spending (stated, not tuned per stream): the false-alarm budget ``alpha`` is split into
``alpha * audit_alpha`` for the audit test and the rest, halved, for each of the two confidence
tests; within each, the j-th test runs at ``budget * 6 / (pi^2 j^2)`` (levels that sum to the
budget). By Bonferroni the chance of any false alarm over an unbounded stream exchangeable with
the reference is at most ``alpha``. The alarm fires once, at the first test that rejects.

What it does not promise: a delay. How soon a drift is seen depends on its size and on the
audits' number (a gate wrong twice as often on 5 % of inputs needs hundreds of audits).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DriftWarning

__all__ = ["DriftAlarm", "DriftMonitor", "DriftWarning", "ks_pvalue", "spent_level"]

Test = Literal["confidence", "llm_share", "audit", "representation"]


def spent_level(budget: float, j: int) -> float:
    """The ``j``-th (from 1) of a sequence of tests' share of an error ``budget``:
    ``budget * 6 / (pi^2 j^2)``, so that the levels of every test ever run sum to ``budget``."""
    return budget * 6.0 / (math.pi**2 * j * j)


def _stats() -> Any:
    from scipy import stats  # here, not above: `import datashunt` stays light

    return stats


@dataclass(frozen=True)
class DriftAlarm:
    """One alarm.

    Attributes:
        at: inputs seen when it fired.
        statistic: the test's statistic (KS distance; live LLM share; live disagreement rate).
        pvalue: its p-value, below ``level``.
        level: the level the test ran at (its share of the alpha budget).
        live_llm_share / calibration_llm_share: the share below δ in the window and in the
            calibration sample.
        test: which test fired (``confidence``, ``llm_share``, ``audit``, or
            ``representation`` for :class:`EmbeddingDrift`).
        live_agreement / reference_agreement: for the audit test, the LLM's agreement with the
            gate on the window's audits and on the reference.
    """

    at: int
    statistic: float
    pvalue: float
    level: float
    live_llm_share: float
    calibration_llm_share: float
    test: Test = "confidence"
    live_agreement: float | None = None
    reference_agreement: float | None = None

    def describe(self) -> str:
        test = f"p = {self.pvalue:.2g} < {self.level:.2g}"
        if self.test == "audit":
            what = (
                f"audits: the LLM agrees with the gate on {self.live_agreement:.1%} of recent "
                f"audits vs {self.reference_agreement:.1%} at reference ({test})"
            )
        elif self.test == "llm_share":
            what = f"the LLM share moved ({test})"
        elif self.test == "representation":
            return (
                f"the gate's inputs drifted (embedding mean shift, Hotelling T² "
                f"{self.statistic:.1f}, {test}) after {self.at} inputs: re-calibrate"
            )
        else:
            what = f"gate confidences drifted (KS {self.statistic:.3f}, {test})"
        return (
            f"{what} after {self.at} inputs; LLM share {self.live_llm_share:.1%} live vs "
            f"{self.calibration_llm_share:.1%} at calibration: re-calibrate"
        )


def ks_pvalue(live: np.ndarray, reference: np.ndarray, reference_n: int) -> tuple[float, float]:
    """(KS distance, asymptotic two-sided p-value) of two samples; ``reference`` (sorted) may
    be quantiles of a sample of ``reference_n`` (scipy's ``ks_2samp(method="asymp")`` when it
    is the sample itself)."""
    live = np.sort(live)
    points = np.concatenate([live, reference])
    f_live = np.searchsorted(live, points, side="right") / live.size
    f_ref = np.searchsorted(reference, points, side="right") / reference.size
    d = float(np.max(np.abs(f_live - f_ref)))
    en = live.size * reference_n / (live.size + reference_n)
    return d, float(np.clip(_stats().kstwo.sf(d, round(en)), 0.0, 1.0))


class DriftMonitor:
    """Watches a stream of gate confidences and audit outcomes (see the module docstring).

    Args:
        reference: the calibration sample's confidences (or evenly spaced quantiles of them).
        threshold: δ (the LLM share is the share below it).
        alpha: the false-alarm probability over the whole stream, all tests together.
        window: live confidences per test.
        step: inputs between tests.
        warn: raise a :class:`DriftWarning` when the alarm first fires.
        reference_n: the calibration sample's size when ``reference`` holds quantiles of it
            (default: ``len(reference)``).
        audit_reference: (disagreements, audits) of the LLM with the gate on a reference
            sample of confident inputs; ``None``: the first ``audit_burn_in`` audits.
        audit_window: audits per audit test.
        audit_step: audits between audit tests.
        audit_burn_in: audits that form the reference when ``audit_reference`` is ``None``.
        audit_alpha: the share of ``alpha`` spent on the audit test (0: no audit test).

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
        window: int = 400,
        step: int = 100,
        warn: bool = True,
        reference_n: int | None = None,
        audit_reference: tuple[int, int] | None = None,
        audit_window: int = 300,
        audit_step: int = 25,
        audit_burn_in: int = 100,
        audit_alpha: float = 0.5,
    ) -> None:
        ref = np.sort(np.asarray(reference, dtype=float))
        if ref.size < 20:
            raise ConfigError(f"a drift reference needs at least 20 confidences, got {ref.size}")
        if not 0.0 < alpha < 1.0 or window < 20 or step < 1:
            raise ConfigError("drift alpha must be in (0, 1), window >= 20 and step >= 1")
        if not 0.0 <= audit_alpha < 1.0 or audit_window < 1 or audit_step < 1:
            raise ConfigError("audit_alpha must be in [0, 1), audit_window and audit_step >= 1")
        if audit_reference is not None and not 0 <= audit_reference[0] <= audit_reference[1]:
            raise ConfigError(
                f"audit_reference is (disagreements, audits), got {tuple(audit_reference)}"
            )
        self.reference = ref
        self.reference_n = int(reference_n or ref.size)
        self.threshold, self.alpha, self.window, self.step = threshold, alpha, window, step
        self.warn = warn
        self.audit_window, self.audit_step, self.audit_burn_in = (
            audit_window,
            audit_step,
            audit_burn_in,
        )
        self.audit_alpha = audit_alpha
        self.audit_reference = audit_reference
        self.live: deque[float] = deque(maxlen=window)
        self.audits: deque[bool] = deque(maxlen=audit_window)
        self.seen = 0
        self.audits_seen = 0
        self.tests = 0
        self.audit_tests = 0
        self.alarm: DriftAlarm | None = None
        self._burn: list[bool] = []
        self._ref_share = float((ref < threshold).mean())

    def level(self, j: int, test: Test = "confidence") -> float:
        """The j-th test's level (``sum_j level(j, test)`` over the three tests is alpha)."""
        budget = self.alpha * self.audit_alpha
        if test != "audit":
            budget = (self.alpha - budget) / 2.0
        return spent_level(budget, j)

    def observe(self, confidences: Iterable[float]) -> DriftAlarm | None:
        """Feed live confidences; returns the alarm when it fires now (only the first time)."""
        fired = None
        for c in confidences:
            self.live.append(float(c))
            self.seen += 1
            due = self.seen >= self.window and (self.seen - self.window) % self.step == 0
            if due and self.alarm is None:
                fired = self._test() or fired
        return fired

    def observe_audits(self, agreed: Iterable[bool]) -> DriftAlarm | None:
        """Feed audit outcomes (whether the LLM gave the gate's label), in arrival order."""
        fired = None
        for a in agreed:
            if self.audit_alpha <= 0.0:
                return None
            if self.audit_reference is None:
                self._burn.append(bool(a))
                if len(self._burn) >= self.audit_burn_in:
                    self.audit_reference = (self._burn.count(False), len(self._burn))
                continue
            self.audits.append(bool(a))
            self.audits_seen += 1
            if self.audits_seen % self.audit_step == 0 and self.alarm is None:
                fired = self._audit_test() or fired
        return fired

    def _test(self) -> DriftAlarm | None:
        self.tests += 1
        live = np.fromiter(self.live, dtype=float)
        level = self.level(self.tests)
        share = float((live < self.threshold).mean())
        d, p = ks_pvalue(live, self.reference, self.reference_n)
        if p < level:
            return self._fire(DriftAlarm(self.seen, d, p, level, share, self._ref_share))
        k, m = int((live < self.threshold).sum()), live.size
        k_ref = round(self._ref_share * self.reference_n)
        table = [[k, m - k], [k_ref, self.reference_n - k_ref]]
        p = float(_stats().fisher_exact(table).pvalue)
        if p < level:
            alarm = DriftAlarm(self.seen, share, p, level, share, self._ref_share, "llm_share")
            return self._fire(alarm)
        return None

    def _audit_test(self) -> DriftAlarm | None:
        assert self.audit_reference is not None  # noqa: S101 - set before any audit test
        self.audit_tests += 1
        level = self.level(self.audit_tests, "audit")
        k_ref, n_ref = self.audit_reference
        m = len(self.audits)
        k = m - sum(self.audits)
        table = [[k, m - k], [k_ref, n_ref - k_ref]]
        p = float(_stats().fisher_exact(table, alternative="greater").pvalue)
        if p >= level:
            return None
        live = np.fromiter(self.live, dtype=float)
        share = float((live < self.threshold).mean()) if live.size else float("nan")
        ref_agree = 1.0 - k_ref / n_ref if n_ref else float("nan")
        alarm = DriftAlarm(
            self.seen, k / m, p, level, share, self._ref_share, "audit", 1.0 - k / m, ref_agree
        )
        return self._fire(alarm)

    def _fire(self, alarm: DriftAlarm) -> DriftAlarm:
        self.alarm = alarm
        if self.warn:
            warnings.warn(alarm.describe(), DriftWarning, stacklevel=4)
        return alarm
