"""A running shunt measuring itself: audit sampling and the drift alarm, in one place.

* Audits: a random fraction ``audit_rate`` of the inputs the gate answers alone are also put to
  the LLM (with no hint and every label on offer, so its answer does not lean on the gate's);
  the gate's answer is returned, the LLM's is recorded with ``extra={"audit": true}``. The
  store then holds an unbiased sample of the small route: ``datashunt monitor`` reads it.
* Drift: every decided input's confidence feeds a :class:`~datashunt.engine.drift.DriftMonitor`;
  when it fires, a :class:`~datashunt.engine.drift.DriftWarning` is raised and every listener
  (the adapters' event hooks) is called with the alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..policy import ShuntPolicy
from ..types import Decision, ShuntResult
from .drift import DriftAlarm, DriftMonitor

__all__ = ["REFERENCE_KEY", "DriftMonitor", "Watch", "reference_confidences"]

log = logging.getLogger("datashunt")

#: The key under ``ShuntPolicy.metrics`` holding the calibration confidences' quantiles.
REFERENCE_KEY = "confidence_quantiles"


def reference_confidences(conf: Sequence[float] | np.ndarray, points: int = 200) -> list[float]:
    """What a policy keeps of the calibration confidences for the drift test: all of them up
    to ``points``, else ``points`` evenly spaced quantiles (rounded to 6 digits)."""
    c = np.sort(np.asarray(conf, dtype=float))
    if c.size > points:
        c = np.quantile(c, (np.arange(points) + 0.5) / points)
    return [round(float(x), 6) for x in c]


class Watch:
    """Audit sampling and the drift monitor of one shunt.

    Args:
        policy: gives δ and, for ``drift=True``, the calibration confidences it keeps.
        audit_rate: the share of gate answers also put to the LLM (0 = none).
        audit_seed: seeds the audit draw (reproducible audits).
        drift: ``True`` for a monitor over the policy's calibration confidences, a
            :class:`DriftMonitor`, or ``None`` / ``False`` for none.
    """

    def __init__(
        self,
        policy: ShuntPolicy,
        *,
        audit_rate: float = 0.0,
        audit_seed: int | None = None,
        drift: DriftMonitor | bool | None = None,
    ) -> None:
        if not 0.0 <= audit_rate <= 1.0:
            raise ConfigError(f"audit_rate must be in [0, 1], got {audit_rate}")
        self.audit_rate = audit_rate
        self._rng = np.random.default_rng(audit_seed)
        if drift is True:
            ref = policy.metrics.get(REFERENCE_KEY)
            if not ref:
                raise ConfigError(
                    "drift=True needs the calibration confidences in the policy: re-run "
                    "`datashunt calibrate` (this release keeps them), or pass a DriftMonitor"
                )
            drift = DriftMonitor(ref, threshold=policy.threshold)
        self.drift: DriftMonitor | None = drift or None
        self.listeners: list[Callable[[DriftAlarm], None]] = []
        #: called with every result as it is made (receipts: the adapters' events)
        self.on_result: list[Callable[[ShuntResult], None]] = []

    def emit(self, results: Sequence[ShuntResult]) -> None:
        """Hand each result to the ``on_result`` listeners (a failing one is logged)."""
        for result in results:
            for listener in self.on_result:
                try:
                    listener(result)
                except Exception:  # an event hook must not break the answers
                    log.exception("result listener %r failed", listener)

    @property
    def drifted(self) -> bool:
        """Whether the drift alarm has fired."""
        return self.drift is not None and self.drift.alarm is not None

    def observe(self, decisions: Sequence[Decision]) -> DriftAlarm | None:
        """Feed the decided confidences to the drift monitor; call the listeners on an alarm."""
        if self.drift is None or not decisions:
            return None
        alarm = self.drift.observe(d.confidence for d in decisions)
        if alarm is not None:
            log.warning("datashunt drift alarm: %s", alarm.describe())
            for listener in self.listeners:
                try:
                    listener(alarm)
                except Exception:  # a broken listener must not break the answers
                    log.exception("drift listener %r failed", listener)
        return alarm

    def audited(self, decisions: Sequence[Decision]) -> list[int]:
        """Indices of the gate-answered decisions drawn for an audit."""
        if self.audit_rate <= 0.0:
            return []
        draws = self._rng.random(len(decisions))
        return [
            i
            for i, (d, u) in enumerate(zip(decisions, draws, strict=True))
            if d.route == "small" and u < self.audit_rate
        ]
