"""A running shunt measuring itself: audit sampling and the drift alarm, in one place.

* Audits: a random fraction ``audit_rate`` of the inputs the gate answers alone are also put to
  the LLM (with no hint and every label on offer, so its answer does not lean on the gate's);
  the gate's answer is returned, the LLM's is recorded with ``extra={"audit": true}``. The
  store then holds an unbiased sample of the small route: ``datashunt monitor`` reads it.
* Drift: every decided input's confidence, and every audit's outcome (whether the LLM gave the
  gate's label), feeds a :class:`~datashunt.engine.drift.DriftMonitor`; when it fires, a
  :class:`~datashunt.engine.drift.DriftWarning` is raised and every listener (the adapters'
  event hooks) is called with the alarm.
* Representation: with an :class:`~datashunt.engine.drift.EmbeddingDrift` set
  (``watch.representation``), the decide step asks the gate for its input representation from
  the same forward pass and feeds it here; its alarm goes to the same listeners.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import ShuntPolicy
from ..types import Decision, ShuntResult
from .drift import DriftAlarm, DriftMonitor
from .representation import EmbeddingDrift

Outcome = ShuntResult | Exception

__all__ = [
    "AUDIT_REFERENCE_KEY",
    "REFERENCE_KEY",
    "DriftMonitor",
    "EmbeddingDrift",
    "Watch",
    "monitor_for",
    "reference_confidences",
]

log = logging.getLogger("datashunt")

#: The key under ``ShuntPolicy.metrics`` holding the calibration confidences' quantiles.
REFERENCE_KEY = "confidence_quantiles"
#: The policy metric with the LLM's (disagreements, answers) against the gate on held-out
#: inputs it answers alone: the audit test's reference (``datashunt bootstrap`` writes it).
AUDIT_REFERENCE_KEY = "audit_reference"


def reference_confidences(conf: Sequence[float] | np.ndarray, points: int = 200) -> list[float]:
    """What a policy keeps of the calibration confidences for the drift test: all of them up
    to ``points``, else ``points`` evenly spaced quantiles (rounded to 6 digits)."""
    c = np.sort(np.asarray(conf, dtype=float))
    if c.size > points:
        c = np.quantile(c, (np.arange(points) + 0.5) / points)
    return [round(float(x), 6) for x in c]


def monitor_for(policy: ShuntPolicy, **options: Any) -> DriftMonitor | None:
    """The drift monitor over the calibration confidences ``policy`` keeps (with the
    calibration sample's real size), or ``None`` when it keeps none; ``options`` go to
    :class:`DriftMonitor` (``alpha``, ``window``, ...)."""
    ref = policy.metrics.get(REFERENCE_KEY)
    if not ref:
        return None
    n = policy.metrics.get("n")
    n_ref = int(n) if n else None
    audit = policy.metrics.get(AUDIT_REFERENCE_KEY)  # (disagreements, audits) on held-out data
    if audit is not None and "audit_reference" not in options:
        options = {**options, "audit_reference": (int(audit[0]), int(audit[1]))}
    return DriftMonitor(ref, threshold=policy.threshold, reference_n=n_ref, **options)


class Watch:
    """Audit sampling and the drift monitor of one shunt.

    Args:
        policy: gives δ and, for ``drift=True``, the calibration confidences it keeps.
        audit_rate: the share of gate answers also put to the LLM (0 = none).
        audit_seed: seeds the audit draw (reproducible audits).
        drift: ``True`` for a monitor over the policy's calibration confidences, a
            :class:`DriftMonitor`, or ``None`` / ``False`` for none.
        representation: an :class:`EmbeddingDrift` over the gate's representation of the
            calibration texts (``EmbeddingDrift.from_texts(gate, texts)``), or ``None``; it
            can also be set later, ``watch.representation = ...``.
    """

    def __init__(
        self,
        policy: ShuntPolicy,
        *,
        audit_rate: float = 0.0,
        audit_seed: int | None = None,
        drift: DriftMonitor | bool | None = None,
        representation: EmbeddingDrift | None = None,
    ) -> None:
        if not 0.0 <= audit_rate <= 1.0:
            raise ConfigError(f"audit_rate must be in [0, 1], got {audit_rate}")
        self.audit_rate = audit_rate
        self._rng = np.random.default_rng(audit_seed)
        if drift is True:
            drift = monitor_for(policy)
            if drift is None:
                raise ConfigError(
                    "drift=True needs the calibration confidences in the policy: re-run "
                    "`datashunt calibrate` (this release keeps them), or pass a DriftMonitor"
                )
        self.drift: DriftMonitor | None = drift or None
        self.representation = representation
        self._unfed: str | None = None  # why features were last refused (logged once)
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

    def rebase(self, policy: ShuntPolicy) -> bool:
        """Compare with ``policy``'s calibration from now on (a swapped gate and policy): a new
        monitor over the confidences it keeps; when it keeps none, the current one stays.
        Returns whether the monitor was replaced. The representation test is kept: its
        reference holds while the new gate embeds inputs the same way (an ``EmbeddingGate``
        on the same backbone); set a new one otherwise."""
        monitor = monitor_for(policy)
        if monitor is None:
            return False
        self.drift = monitor
        return True

    @property
    def wants_features(self) -> bool:
        """Whether the decide step should ask the gate for its input representation."""
        return self.representation is not None

    @property
    def drifted(self) -> bool:
        """Whether a drift alarm (confidences, audits or representation) has fired."""
        fired = self.drift is not None and self.drift.alarm is not None
        return fired or (self.representation is not None and self.representation.alarm is not None)

    def observe(self, decisions: Sequence[Decision]) -> DriftAlarm | None:
        """Feed the decided confidences to the drift monitor; call the listeners on an alarm."""
        if self.drift is None or not decisions:
            return None
        return self._raise(self.drift.observe(d.confidence for d in decisions))

    def observe_features(self, features: np.ndarray | None) -> DriftAlarm | None:
        """Feed the gate's representation of the decided inputs (rows in input order) to the
        representation test; call the listeners on an alarm. ``None`` (a gate with no
        representation) or rows of another width than the reference's are skipped, with one
        log line: the answers must not depend on the watch."""
        rep = self.representation
        if rep is None:
            return None
        why = None
        if features is None:
            why = "the gate gives no input representation"
        elif np.ndim(features) != 2 or np.shape(features)[1] != rep.width:
            why = f"features of shape {np.shape(features)}, the reference's width is {rep.width}"
        if why is not None:
            if why != self._unfed:
                log.warning("datashunt: representation test not fed: %s", why)
            self._unfed = why
            return None
        return self._raise(rep.observe(np.asarray(features)))

    def observe_audits(self, results: Sequence[Outcome | None]) -> DriftAlarm | None:
        """Feed the audited results (``with_audit``'s, in input order) to the drift monitor's
        audit test: whether the LLM gave the gate's label. Failed audits and unparsed answers
        (a fallback to the gate's label) are skipped: they say nothing about the gate."""
        if self.drift is None:
            return None
        agreed = []
        for r in results:
            if not isinstance(r, ShuntResult):
                continue
            audit = r.extra.get("audit")
            # a fallback label is the gate's own: it says nothing about agreement
            if isinstance(audit, dict) and audit.get("source") == "llm":
                agreed.append(audit.get("label") == r.label)
        return self._raise(self.drift.observe_audits(agreed)) if agreed else None

    def _raise(self, alarm: DriftAlarm | None) -> DriftAlarm | None:
        if alarm is not None:
            log.warning("datashunt drift alarm: %s", alarm.describe())
            for listener in self.listeners:
                try:
                    listener(alarm)
                except Exception:  # a broken listener must not break the answers
                    log.exception("drift listener %r failed", listener)
        return alarm

    def audited(self, decisions: Sequence[Decision], rate: float | None = None) -> list[int]:
        """Indices of the gate-answered decisions drawn for an audit (at ``rate``, default
        ``audit_rate``)."""
        rate = self.audit_rate if rate is None else rate
        if rate <= 0.0:
            return []
        draws = self._rng.random(len(decisions))
        return [
            i
            for i, (d, u) in enumerate(zip(decisions, draws, strict=True))
            if d.route == "small" and u < rate
        ]
