"""Calibration targets: what the threshold δ should achieve, as values that round-trip as JSON.

* :class:`Budget` — at most a share of inputs goes to the LLM;
* :class:`PrecisionFloor` — what the gate answers alone is at least this accurate;
* :class:`MaxAccuracy` — the best expected accuracy, given the LLM's accuracy (a number, or
  per-example correctness measured on a dev sample with the LLM in the loop).

A policy stores its target as ``target.to_json()`` (a dict with a ``"kind"``), and
:func:`target_from_json` rebuilds the same value: no description is parsed back. Text is made
only at the edge: :meth:`describe` for reports, :func:`parse_target` for the CLI's specs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ...policy import ShuntPolicy

__all__ = [
    "Budget",
    "MaxAccuracy",
    "PrecisionFloor",
    "Target",
    "describe_target",
    "parse_target",
    "target_from_json",
    "target_from_policy",
]


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"target {dict(data)} needs a number {key!r}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Budget:
    """At most ``max_llm_rate`` of the inputs go to the LLM (0.3 = 30%)."""

    max_llm_rate: float
    kind: ClassVar[str] = "budget"

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_llm_rate <= 1.0:
            raise ConfigError(f"max_llm_rate must be in [0, 1], got {self.max_llm_rate}")

    def describe(self) -> str:
        return f"budget: LLM-call rate <= {self.max_llm_rate:.0%}"

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "budget", "max_llm_rate": R}``, exact (JSON keeps a float's repr)."""
        return {"kind": self.kind, "max_llm_rate": self.max_llm_rate}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Budget:
        return cls(_number(data, "max_llm_rate"))


@dataclass(frozen=True)
class PrecisionFloor:
    """The gate's accuracy on the inputs it answers alone is at least ``min_precision``."""

    min_precision: float
    kind: ClassVar[str] = "precision"

    def __post_init__(self) -> None:
        if not 0.0 < self.min_precision <= 1.0:
            raise ConfigError(f"min_precision must be in (0, 1], got {self.min_precision}")

    def describe(self) -> str:
        return f"precision floor: small-route accuracy >= {self.min_precision:.1%}"

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "precision", "min_precision": P}``."""
        return {"kind": self.kind, "min_precision": self.min_precision}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrecisionFloor:
        return cls(_number(data, "min_precision"))


@dataclass(frozen=True)
class MaxAccuracy:
    """Maximise expected accuracy, given the LLM's accuracy.

    Attributes:
        llm_accuracy: the LLM's accuracy as one number, or
        llm_correct: per-example LLM correctness on the calibration data (1/0, NaN where not
            measured); below each δ the LLM's accuracy is estimated on the measured inputs that
            would go to it, which captures that the LLM is usually worse on hard inputs too.
    """

    llm_accuracy: float | None = None
    llm_correct: Sequence[float] | None = field(default=None, compare=False)
    kind: ClassVar[str] = "accuracy"

    def __post_init__(self) -> None:
        if (self.llm_accuracy is None) == (self.llm_correct is None):
            raise ConfigError("MaxAccuracy needs exactly one of llm_accuracy or llm_correct")
        if self.llm_accuracy is not None and not 0.0 <= self.llm_accuracy <= 1.0:
            raise ConfigError(f"llm_accuracy must be in [0, 1], got {self.llm_accuracy}")

    @property
    def measured(self) -> int:
        """How many inputs the LLM was measured on (0 for a given ``llm_accuracy``)."""
        if self.llm_correct is None:
            return 0
        return int(np.sum(~np.isnan(np.asarray(self.llm_correct, dtype=float))))

    def describe(self) -> str:
        if self.llm_accuracy is not None:
            return f"max expected accuracy (LLM accuracy {self.llm_accuracy:.1%})"
        return f"max expected accuracy (LLM measured on {self.measured} inputs)"

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "accuracy", "llm_accuracy": A}``, or the measured correctness per
        example as ``"llm_correct"`` (``null`` where not measured: JSON has no NaN)."""
        if self.llm_correct is None:
            return {"kind": self.kind, "llm_accuracy": self.llm_accuracy}
        values = [float(v) for v in self.llm_correct]
        return {"kind": self.kind, "llm_correct": [None if math.isnan(v) else v for v in values]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MaxAccuracy:
        if data.get("llm_correct") is None:
            return cls(llm_accuracy=_number(data, "llm_accuracy"))
        raw = data["llm_correct"]
        if not isinstance(raw, list):
            raise ConfigError(f"target llm_correct must be a list, got {type(raw).__name__}")
        return cls(llm_correct=tuple(math.nan if v is None else float(v) for v in raw))


Target = Budget | PrecisionFloor | MaxAccuracy
_KINDS: dict[str, type[Budget] | type[PrecisionFloor] | type[MaxAccuracy]] = {
    c.kind: c for c in (Budget, PrecisionFloor, MaxAccuracy)
}


def target_from_json(data: Mapping[str, Any]) -> Target:
    """The target that ``target.to_json()`` was made from.

    Raises:
        ConfigError: an unknown ``kind`` or a missing or invalid value.
    """
    kind = data.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"unknown target kind {kind!r}: expected one of {sorted(_KINDS)}")
    return cls.from_json(data)


def parse_target(spec: str, *, llm_accuracy: float | None = None) -> Target:
    """Parse a CLI target: ``budget:0.3``, ``precision:0.97`` or ``accuracy`` (needs the LLM's
    accuracy, from ``llm_accuracy`` or as ``accuracy:0.92``)."""
    kind, _, value = spec.partition(":")
    try:
        if kind == "budget":
            return Budget(float(value))
        if kind == "precision":
            return PrecisionFloor(float(value))
        if kind == "accuracy":
            acc = float(value) if value else llm_accuracy
            if acc is None:
                raise ConfigError("target 'accuracy' needs the LLM's accuracy: accuracy:0.92")
            return MaxAccuracy(llm_accuracy=acc)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"target {spec!r}: {value!r} is not a number") from exc
    raise ConfigError(f"unknown target {spec!r}: use budget:R, precision:P or accuracy:A")


# Policies written before targets were stored as data hold the description; read those back
# (percentages with at most one decimal: budget:0.125 comes back as budget:0.12).
_LEGACY = (
    (re.compile(r"^budget: LLM-call rate <= ([0-9.]+)%$"), Budget),
    (re.compile(r"^precision floor: small-route accuracy >= ([0-9.]+)%$"), PrecisionFloor),
    (re.compile(r"^max expected accuracy \(LLM accuracy ([0-9.]+)%\)$"), MaxAccuracy),
)


def _from_description(desc: str) -> Target | None:
    for pattern, cls in _LEGACY:
        m = pattern.match(desc)
        if m:
            value = float(m.group(1)) / 100
            return MaxAccuracy(llm_accuracy=value) if cls is MaxAccuracy else cls(value)
    return None


def target_from_policy(policy: ShuntPolicy | None) -> Target:
    """The calibration target a saved policy was chosen for.

    Raises:
        ConfigError: no policy, no target, an old policy's description that names no
            rebuildable target, or a target measured per example on the old calibration data
            (its entries belong to those rows): pass ``--target``.
    """
    spec = policy.target if policy is not None else None
    target: Target | None = None
    if isinstance(spec, Mapping):
        target = target_from_json(spec)
    elif isinstance(spec, str):
        target = _from_description(spec)
    if isinstance(target, MaxAccuracy) and target.llm_correct is not None:
        target = None  # measured on rows of the old calibration data, not of the new
    if target is not None:
        return target
    where = (
        f"the gate's policy target {describe_target(spec)!r}"
        if spec
        else "the gate has no policy target"
    )
    raise ConfigError(
        f"cannot re-calibrate for {where}: pass the target explicitly "
        "(--target budget:R, precision:P or accuracy:A)"
    )


def describe_target(spec: Target | Mapping[str, Any] | str | None) -> str:
    """A target (or a policy's stored form of one) as text for a report; ``""`` for none."""
    if spec is None:
        return ""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        return target_from_json(spec).describe()
    return spec.describe()
