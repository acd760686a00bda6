"""Shadowing: a shunt with no gate yet, and the way back to it when a gate stops being faithful.

A user with an LLM chain and no labelled data starts here: :meth:`Shunt.shadow
<datashunt.Shunt.shadow>` (or :meth:`Shunt.from_registry <datashunt.Shunt.from_registry>` on a
registry with no champion yet) sends every input to the LLM exactly as the user's chain would
(no hint, no pruning: every label on offer) and records each answer with its parsed label. Those
answers are what ``datashunt bootstrap`` trains and certifies the first gate on; a shunt that
follows the registry takes over when it is promoted. When the audit test of the drift alarm
fires on a gate (``on_drift="shadow"``), the shunt goes back to shadowing by itself, says so in
its log and its drift event, and refuses that version until the registry promotes another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..gates.base import BaseGate, FloatArray
from ..policy import ShuntPolicy, validate_labels

__all__ = [
    "SHADOW_VERSION",
    "Exploration",
    "ShadowGate",
    "is_shadow",
    "is_shadow_policy",
    "shadow_policy",
]

log = logging.getLogger("datashunt")

#: The version a shadowing shunt reports serving.
SHADOW_VERSION = "shadow"
#: Marks a shadow policy (its requests offer every label, with no hint).
SHADOW_KEY = "shadow"


class ShadowGate(BaseGate):
    """The gate of a shunt that has none yet: no opinion (uniform probabilities), so every
    input goes to the LLM.

    Args:
        labels: the labels the user's chain answers with.
    """

    shadow = True

    def __init__(self, labels: Sequence[str]) -> None:
        labels = validate_labels(labels)
        if len(labels) < 2:
            raise ConfigError(f"a shunt needs at least two labels to choose from, got {labels}")
        super().__init__(list(labels), 1.0)

    def _logits(self, texts: list[str]) -> FloatArray:
        return np.zeros((len(texts), len(self.labels)), dtype=np.float64)


def shadow_policy(labels: Sequence[str]) -> ShuntPolicy:
    """A policy that never lets the gate answer (δ = 1, above any uniform confidence)."""
    return ShuntPolicy(labels=tuple(labels), threshold=1.0, metrics={SHADOW_KEY: 1.0})


def is_shadow(gate: object) -> bool:
    """Whether ``gate`` is a :class:`ShadowGate` (the shunt is shadowing)."""
    return bool(getattr(gate, "shadow", False))


def is_shadow_policy(policy: ShuntPolicy) -> bool:
    """Whether ``policy`` is a shadow policy (what decided an input while shadowing)."""
    return bool(policy.metrics.get(SHADOW_KEY))


@dataclass(frozen=True)
class Exploration:
    """The share of inputs still sent to the LLM after takeover, whatever the score says.

    ``rate(t) = floor + (start - floor) * 0.5 ** (t / half_life)`` for the ``t``-th input since
    the student first took over. Those inputs are drawn uniformly (not only among the uncertain
    ones, as OCL's decaying probability also is): their answers keep the student learning where
    it is confident, and they are the audits on which the next certificate is computed.
    """

    start: float = 0.15
    floor: float = 0.03
    half_life: float = 1000.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.floor <= self.start <= 1.0) or self.half_life <= 0:
            raise ConfigError(
                "exploration needs 0 <= floor <= start <= 1 and half_life > 0, got "
                f"start={self.start}, floor={self.floor}, half_life={self.half_life}"
            )

    def rate(self, t: int) -> float:
        """The share for the ``t``-th gate-answered input since the gate took over."""
        return float(self.floor + (self.start - self.floor) * 0.5 ** (max(t, 0) / self.half_life))
