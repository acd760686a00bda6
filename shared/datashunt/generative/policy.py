"""The generative gate's policy (one measure, one δ) and its calibration on labelled prompts."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..training.guarantees.targets import Budget, MaxAccuracy, PrecisionFloor, Target
from ..training.guarantees.thresholds import choose_threshold
from .confidence import MEASURES, Measure, SequenceConfidence, auroc

__all__ = [
    "GENERATIVE_POLICY_FILE",
    "GenerativeCalibration",
    "GenerativePolicy",
    "acceptable",
    "calibrate_generative",
]

#: The file a generative policy is saved to inside a directory.
GENERATIVE_POLICY_FILE = "datashunt_generative.json"


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def acceptable(answer: str, accepted: Sequence[str], others: Sequence[str] = ()) -> bool:
    """Whether ``answer`` holds one of the ``accepted`` answers as whole words (case and
    punctuation ignored) and none of the ``others``: ``"The sentiment is Positive."`` accepts
    ``["positive"]``; with ``others=["negative"]``, ``"positive or negative"`` does not (an
    answer that repeats every option is not an answer)."""
    said = _words(answer)
    if any(_words(o).strip() and _words(o) in said for o in others if o not in accepted):
        return False
    return any(_words(a).strip() and _words(a) in said for a in accepted)


@dataclass(frozen=True)
class GenerativePolicy:
    """When the small model's answer stands: its ``measure`` is at least ``threshold``.

    Attributes:
        measure: the sequence confidence used (see :mod:`~datashunt.generative.confidence`).
        threshold: δ, in [0, 1]: 0 keeps every small answer, 1 asks the large model always
            (except for an answer of probability 1).
        target: what δ was chosen for (``Budget(0.3).to_json()``), if calibrated.
        aurocs: each measure's AUROC for correctness on the calibration set.
    """

    measure: Measure = "mean"
    threshold: float = 0.5
    target: Mapping[str, Any] | None = None
    aurocs: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ConfigError(f"measure must be one of {MEASURES}, got {self.measure!r}")
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")

    def accepts(self, confidence: SequenceConfidence) -> bool:
        """The small answer stands."""
        return confidence.score(self.measure) >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "threshold": self.threshold,
            "target": dict(self.target) if self.target is not None else None,
            "aurocs": dict(self.aurocs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerativePolicy:
        return cls(
            measure=data.get("measure", "mean"),
            threshold=float(data.get("threshold", 0.5)),
            target=data.get("target"),
            aurocs=dict(data.get("aurocs") or {}),
        )

    def save(self, directory: str | Path) -> Path:
        """Write :data:`GENERATIVE_POLICY_FILE` into ``directory``; returns its path."""
        path = Path(directory) / GENERATIVE_POLICY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> GenerativePolicy:
        """Read the policy saved in ``directory``.

        Raises:
            ConfigError: no policy there (run the calibration first).
        """
        path = Path(directory) / GENERATIVE_POLICY_FILE
        if not path.is_file():
            raise ConfigError(f"no {GENERATIVE_POLICY_FILE} in {directory}: calibrate first")
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class GenerativeCalibration:
    """What :func:`calibrate_generative` measured and chose.

    Attributes:
        policy: the chosen measure and δ.
        aurocs: each measure's AUROC for correctness (``None``: all right or all wrong).
        small_accuracy: the small model's accuracy on the calibration prompts.
        large_rate: the share of those prompts δ sends to the large model.
        note: why the target could not be met, if it could not.
    """

    policy: GenerativePolicy
    aurocs: Mapping[str, float | None]
    small_accuracy: float
    large_rate: float
    note: str = ""


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else value


def calibrate_generative(
    confidences: Sequence[SequenceConfidence],
    correct: Sequence[bool],
    target: Target,
    *,
    measure: Measure | None = None,
) -> GenerativeCalibration:
    """Choose the measure (the best AUROC, unless given) and δ for ``target``.

    Args:
        confidences: the small model's answer confidence on each calibration prompt.
        correct: whether each answer was acceptable (:func:`acceptable`).
        target: :class:`Budget` (large-model call rate), :class:`PrecisionFloor` (accuracy of
            the answers kept) or :class:`MaxAccuracy` (with the large model's accuracy).
        measure: use this measure instead of the best-separating one.

    Raises:
        DataError: no prompts, or a length mismatch.
    """
    if not confidences:
        raise DataError("cannot calibrate on zero prompts")
    if len(confidences) != len(correct):
        raise DataError(f"{len(confidences)} confidences for {len(correct)} correctness values")
    y = np.asarray(correct, dtype=float)
    aurocs: dict[str, float | None] = {
        m: auroc([c.score(m) for c in confidences], y) for m in MEASURES
    }
    chosen: Measure = (
        max(MEASURES, key=lambda m: _or_minus_one(aurocs[m])) if measure is None else measure
    )
    if chosen not in MEASURES:
        raise ConfigError(f"measure must be one of {MEASURES}, got {chosen!r}")
    if not isinstance(target, Budget | PrecisionFloor | MaxAccuracy):
        raise ConfigError(f"target must be a Budget, PrecisionFloor or MaxAccuracy, got {target!r}")
    scores = np.array([c.score(chosen) for c in confidences])
    delta, note = choose_threshold(scores, y, target)
    policy = GenerativePolicy(chosen, float(delta), target.to_json(), aurocs)
    return GenerativeCalibration(
        policy=policy,
        aurocs=aurocs,
        small_accuracy=float(y.mean()),
        large_rate=float((scores < delta).mean()),
        note=note,
    )
