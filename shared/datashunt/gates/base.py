"""The gate protocol and the base class every gate builds on.

A gate is the small model: ``predict_proba(texts) -> (n, k)`` probabilities over ``labels``.
:class:`BaseGate` normalises input, applies the fitted temperature and checks the output; a
concrete gate implements one hook, ``_logits``. A gate that can also give its input
representation from the same forward pass (the drift alarm's representation test) overrides a
second, optional hook, ``_logits_and_features``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, GateError
from ..inputs import validate_texts
from ..policy import validate_labels

__all__ = ["BaseGate", "FeatureGate", "FloatArray", "Gate", "softmax"]

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class Gate(Protocol):
    """Anything with ``labels`` and ``predict_proba`` can be a gate."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def predict_proba(self, texts: Sequence[str]) -> FloatArray: ...


@runtime_checkable
class FeatureGate(Gate, Protocol):
    """A gate that can return its input representation with the probabilities, from one pass."""

    def predict_proba_and_features(
        self, texts: Sequence[str]
    ) -> tuple[FloatArray, FloatArray | None]: ...


def softmax(logits: FloatArray, temperature: float = 1.0) -> FloatArray:
    """Row-wise softmax of ``logits / temperature``, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


class BaseGate(ABC):
    """Base of the gates shipped here: validation and temperature in one place.

    Subclasses implement :meth:`_logits` for a non-empty list of valid texts.
    """

    def __init__(self, labels: Sequence[str], temperature: float = 1.0) -> None:
        self._labels = validate_labels(labels)
        self.temperature = temperature

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names, in output column order."""
        return self._labels

    @property
    def temperature(self) -> float:
        """The softmax temperature applied to logits (fitted by calibration)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"temperature must be a positive number, got {value}")
        self._temperature = float(value)

    def predict_logits(self, texts: Sequence[str]) -> FloatArray:
        """Raw (unscaled) logits, shape ``(n, k)``.

        Raises:
            InputError: for a bare string, a non-string or empty element.
            GateError: if the model returns an array of the wrong shape.
        """
        return self._checked(texts, features=False)[0]

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Temperature-scaled probabilities, shape ``(n, k)``, rows summing to 1."""
        return softmax(self.predict_logits(texts), self._temperature)

    def predict_proba_and_features(
        self, texts: Sequence[str]
    ) -> tuple[FloatArray, FloatArray | None]:
        """:meth:`predict_proba` and the gate's input representation, shape ``(n, d)``, from
        the same forward pass; ``None`` for a gate that has none to give (the default).

        Raises:
            InputError: as :meth:`predict_logits`.
            GateError: if the model returns arrays of the wrong shape.
        """
        if type(self)._logits_and_features is BaseGate._logits_and_features:
            return self.predict_proba(texts), None  # exactly predict_proba, overrides included
        logits, feats = self._checked(texts, features=True)
        return softmax(logits, self._temperature), feats

    def _checked(
        self, texts: Sequence[str], *, features: bool
    ) -> tuple[FloatArray, FloatArray | None]:
        batch = validate_texts(texts)
        k = len(self._labels)
        if not batch:
            return np.zeros((0, k), dtype=np.float64), None
        raw, feats = self._logits_and_features(batch) if features else (self._logits(batch), None)
        logits = np.asarray(raw, dtype=np.float64)
        if logits.shape != (len(batch), k):
            raise GateError(
                f"{type(self).__name__} returned logits of shape {logits.shape}, "
                f"expected {(len(batch), k)} for {k} labels"
            )
        if feats is None:
            return logits, None
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != len(batch):
            raise GateError(
                f"{type(self).__name__} returned features of shape {feats.shape}, "
                f"expected ({len(batch)}, d)"
            )
        return logits, feats

    @abstractmethod
    def _logits(self, texts: list[str]) -> FloatArray:
        """Logits for a non-empty list of validated texts."""

    def _logits_and_features(self, texts: list[str]) -> tuple[FloatArray, FloatArray | None]:
        """Logits and the input representation of the same pass (default: no representation).

        Override it only where the representation is free: a second forward pass would double
        the cost of every decision."""
        return self._logits(texts), None
