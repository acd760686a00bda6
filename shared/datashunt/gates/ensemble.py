"""A gate that mixes the probabilities of several gates (e.g. a fine-tuned model and an
embedding head): one more way to rank inputs by confidence.

Routing quality is ranking quality (see :mod:`datashunt.training.guarantees.ranking`): two gates
that err
on different inputs can order the inputs better together than either alone. Each member keeps
its own temperature (fit them on dev first); the mixture is a weighted mean of the members'
probabilities (``mode="prob"``) or of their log-probabilities (``mode="logit"``, a product of
experts). The ensemble's own temperature (fitted by calibration like any gate's) applies on top.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from .base import BaseGate, FloatArray, Gate
from .embedding import GATE_FILE

__all__ = ["ENSEMBLE_TYPE", "EnsembleGate", "is_ensemble_dir"]

#: The ``type`` an ensemble's ``datashunt_gate.json`` carries.
ENSEMBLE_TYPE = "ensemble"

Mode = Literal["prob", "logit"]
_EPS = 1e-12


class EnsembleGate(BaseGate):
    """A weighted mixture of member gates' temperature-scaled probabilities.

    Args:
        members: gates with the same labels in the same order.
        weights: one non-negative weight per member (normalised to sum to 1).
        mode: ``"prob"``: log of the weighted mean probability; ``"logit"``: weighted mean of
            the members' log-probabilities.
        temperature: the ensemble's own softmax temperature.
        member_dirs: where the members live (written by :meth:`save`).
        memo: keep each text's member probabilities, so that asking about the same inputs again (a
            benchmark predicts dev several times) runs no member twice; the members and their
            temperatures must not change afterwards.

    Raises:
        ConfigError: no member, mismatched labels or weights.

    Example:
        >>> gate = EnsembleGate([finetuned, embedding], [0.7, 0.3])  # doctest: +SKIP
        >>> gate.predict_proba(["a fine film"])  # doctest: +SKIP
    """

    def __init__(
        self,
        members: Sequence[Gate],
        weights: Sequence[float],
        *,
        mode: Mode = "prob",
        temperature: float = 1.0,
        member_dirs: Sequence[str] | None = None,
        memo: bool = False,
    ) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member gate")
        labels = tuple(members[0].labels)
        for m in members[1:]:
            if tuple(m.labels) != labels:
                raise ConfigError(
                    f"ensemble members must share labels in one order: {labels} vs "
                    f"{tuple(m.labels)}"
                )
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or (w < 0).any():
            raise ConfigError(
                f"weights must be {len(members)} non-negative numbers, got {list(weights)}"
            )
        if w.sum() <= 0:
            raise ConfigError("at least one ensemble weight must be positive")
        if mode not in ("prob", "logit"):
            raise ConfigError(f"mode must be 'prob' or 'logit', got {mode!r}")
        super().__init__(labels, temperature)
        self.members = list(members)
        self.weights = w / w.sum()
        self.mode: Mode = mode
        self.member_dirs = list(member_dirs) if member_dirs is not None else None
        self._memo: dict[str, FloatArray] | None = {} if memo else None

    def _logits(self, texts: list[str]) -> FloatArray:
        return mix_probabilities(self.member_probabilities(texts), self.weights, self.mode)

    def member_probabilities(self, texts: Sequence[str]) -> list[FloatArray]:
        """Each member's temperature-scaled probabilities, ``(n, k)`` per member (from the memo
        where the ensemble keeps one: the benchmark's deferral score reads them)."""
        texts = list(texts)
        if self._memo is None:
            stacked = self._members(texts)
        else:
            todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
            if todo:
                self._memo.update(zip(todo, self._members(todo), strict=True))
            stacked = np.stack([self._memo[t] for t in texts]) if texts else self._members([])
        return [np.asarray(stacked[:, j], dtype=np.float64) for j in range(len(self.members))]

    def _members(self, texts: list[str]) -> FloatArray:
        """``(n, members, k)``: every member's probabilities."""
        if not texts:
            return np.zeros((0, len(self.members), len(self.labels)))
        probs = [np.asarray(m.predict_proba(texts), dtype=np.float64) for m in self.members]
        return np.stack(probs, axis=1)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``datashunt_gate.json``: the members' folders and temperatures, the weights.

        Raises:
            ConfigError: the ensemble was built without ``member_dirs``.
        """
        if self.member_dirs is None:
            raise ConfigError("pass member_dirs to save an ensemble: it stores where they live")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "type": ENSEMBLE_TYPE,
            "labels": list(self.labels),
            "mode": self.mode,
            "temperature": self.temperature,
            "members": [
                {"dir": d, "weight": float(w), "temperature": _temperature(m)}
                for d, w, m in zip(self.member_dirs, self.weights, self.members, strict=True)
            ],
        }
        (out / GATE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, gate_dir: str | Path) -> EnsembleGate:
        """Load an ensemble written by :meth:`save` (members from their own folders).

        Raises:
            ConfigError: the folder holds no ensemble.
        """
        from . import load_gate

        path = Path(gate_dir)
        if not is_ensemble_dir(path):
            raise ConfigError(f"{path} holds no ensemble gate ({GATE_FILE} of type 'ensemble')")
        meta = json.loads((path / GATE_FILE).read_text(encoding="utf-8"))
        members = [load_gate(m["dir"], temperature=m["temperature"]) for m in meta["members"]]
        return cls(
            members,
            [m["weight"] for m in meta["members"]],
            mode=meta["mode"],
            temperature=meta["temperature"],
            member_dirs=[m["dir"] for m in meta["members"]],
        )


def mix_probabilities(probs: Sequence[FloatArray], weights: Any, mode: Mode) -> FloatArray:
    """The ensemble's logits from the members' probabilities (softmax gives the mixture)."""
    w = np.asarray(weights, dtype=np.float64)
    if mode == "prob":
        mixed = sum(wi * p for wi, p in zip(w, probs, strict=True))
        return np.asarray(np.log(np.clip(mixed, _EPS, 1.0)), dtype=np.float64)
    logs = sum(wi * np.log(np.clip(p, _EPS, 1.0)) for wi, p in zip(w, probs, strict=True))
    return np.asarray(logs, dtype=np.float64)


def is_ensemble_dir(path: str | Path) -> bool:
    """Whether a folder holds an ensemble written by :meth:`EnsembleGate.save`."""
    meta = Path(path) / GATE_FILE
    if not meta.is_file():
        return False
    try:
        return bool(json.loads(meta.read_text(encoding="utf-8")).get("type") == ENSEMBLE_TYPE)
    except ValueError:
        return False


def _temperature(gate: Gate) -> float:
    return float(getattr(gate, "temperature", 1.0))
