"""The representation drift test: Hotelling's T² on the gate's input embeddings.

Beside :class:`~datashunt.engine.drift.DriftMonitor` (confidences, LLM share, audits), this
test sees a change of inputs that leaves the gate's confidences alone.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DriftWarning
from .drift import DriftAlarm, _stats, spent_level

__all__ = ["EmbeddingDrift"]


class EmbeddingDrift:
    """A drift test on the gate's input representation, for gates that embed their inputs.

    Every ``step`` inputs, Hotelling's two-sample T² test of the mean of the last ``window``
    embeddings against the reference embeddings' mean, in the reference's top ``components``
    principal directions (F distribution; pooled covariance), the j-th test at level
    ``alpha * 6 / (pi^2 j^2)``. It sees a change of inputs that leaves the confidences alone
    (SST-2 phrases -> MR sentences), at the cost of a (window, d) @ (d, components) product per
    test. Its alpha is its own: run it beside a :class:`DriftMonitor` with the budget split
    (e.g. 0.025 each for 0.05 in all, Bonferroni).

    To run it inside a shunt, build it from the gate's own representation of the calibration
    texts and hand it to the shunt's watch; every decision then feeds it (the gate gives the
    representation from the same forward pass: ``EmbeddingGate``, ``HFGate``).

    Args:
        reference: the calibration sample's embeddings, shape (n, d), n > components + 1.
        components: principal directions tested.
        alpha, window, step, warn: as in :class:`DriftMonitor`.

    Example:
        >>> rep = EmbeddingDrift.from_texts(shunt.gate, calib_texts, alpha=0.025)  # doctest: +SKIP
        >>> shunt.watch.representation = rep  # doctest: +SKIP
    """

    def __init__(
        self,
        reference: np.ndarray,
        *,
        components: int = 20,
        alpha: float = 0.05,
        window: int = 200,
        step: int = 50,
        warn: bool = True,
    ) -> None:
        ref = np.asarray(reference, dtype=float)
        if ref.ndim != 2 or ref.shape[0] <= components + 1 or components < 1:
            raise ConfigError(
                f"an embedding reference needs more than components + 1 = {components + 1} "
                f"rows of shape (n, d), got {ref.shape}"
            )
        if not 0.0 < alpha < 1.0 or window <= components + 1 or step < 1:
            raise ConfigError("alpha must be in (0, 1), window > components + 1, step >= 1")
        self.mean = ref.mean(axis=0)
        _, _, vt = np.linalg.svd(ref - self.mean, full_matrices=False)
        self.basis = vt[:components].T
        proj = (ref - self.mean) @ self.basis
        self.n_ref, self.ref_mean, self.ref_cov = proj.shape[0], proj.mean(0), np.cov(proj.T)
        self.components, self.alpha, self.window, self.step, self.warn = (
            components,
            alpha,
            window,
            step,
            warn,
        )
        self.live: deque[np.ndarray] = deque(maxlen=window)
        self.seen = self.tests = 0
        self.alarm: DriftAlarm | None = None

    @classmethod
    def from_texts(cls, gate: object, texts: Sequence[str], **options: Any) -> EmbeddingDrift:
        """A test whose reference is ``gate``'s representation of ``texts`` (the calibration
        texts: the sample δ was chosen on); ``options`` as in the constructor.

        Raises:
            ConfigError: the gate gives no input representation
                (no ``predict_proba_and_features``, or it returns ``None``).
        """
        both = getattr(gate, "predict_proba_and_features", None)
        feats = both(list(texts))[1] if callable(both) else None
        if feats is None:
            raise ConfigError(
                f"{type(gate).__name__} gives no input representation: the representation "
                "test needs a gate that embeds its inputs (EmbeddingGate, HFGate on torch)"
            )
        return cls(np.asarray(feats, dtype=float), **options)

    @property
    def width(self) -> int:
        """The representation's dimension d."""
        return int(self.mean.shape[0])

    def observe(self, embeddings: np.ndarray) -> DriftAlarm | None:
        """Feed live embeddings (rows); returns the alarm when it fires now (the first time)."""
        fired = None
        for row in np.atleast_2d(np.asarray(embeddings, dtype=float)):
            self.live.append((row - self.mean) @ self.basis)
            self.seen += 1
            due = self.seen >= self.window and (self.seen - self.window) % self.step == 0
            if due and self.alarm is None:
                fired = self._test() or fired
        return fired

    def _test(self) -> DriftAlarm | None:
        self.tests += 1
        live = np.asarray(self.live)
        n1, n2, k = self.n_ref, live.shape[0], self.components
        d = live.mean(0) - self.ref_mean
        pooled = ((n1 - 1) * self.ref_cov + (n2 - 1) * np.cov(live.T)) / (n1 + n2 - 2)
        t2 = float(n1 * n2 / (n1 + n2) * d @ np.linalg.solve(pooled, d))
        f = (n1 + n2 - k - 1) / (k * (n1 + n2 - 2)) * t2
        p = float(_stats().f.sf(f, k, n1 + n2 - k - 1))
        level = spent_level(self.alpha, self.tests)
        if p >= level:
            return None
        nan = float("nan")
        self.alarm = DriftAlarm(self.seen, t2, p, level, nan, nan, "representation")
        if self.warn:
            warnings.warn(self.alarm.describe(), DriftWarning, stacklevel=3)
        return self.alarm
