"""The shunt policy: the threshold δ, the temperature and the pruning settings, validated once."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["POLICY_FILE", "ShuntPolicy", "validate_labels"]

#: File name of a policy saved beside a gate's model directory.
POLICY_FILE = "datashunt_policy.json"


def validate_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Return ``labels`` as a tuple after checking they are non-empty, unique strings.

    Raises:
        ConfigError: if the label set is empty, has duplicates or non-string entries.
    """
    if isinstance(labels, str | bytes):  # tuple("negative") would be its letters
        raise ConfigError(
            f"labels must be a list of label names, got the string {labels!r}: "
            f"write [{labels!r}, ...]"
        )
    out = tuple(labels)
    if not out:
        raise ConfigError("labels must not be empty: give at least one label name")
    for lab in out:
        if not isinstance(lab, str) or not lab.strip():
            raise ConfigError(f"labels must be non-empty strings, got {lab!r}")
    if len(set(out)) != len(out):
        dupes = sorted({x for x in out if out.count(x) > 1})
        raise ConfigError(f"labels must be unique, got duplicates {dupes}")
    return out


def _number(name: str, value: object) -> float:
    """``value`` as a float, or a :class:`ConfigError` naming the field (JSON gives ``null``,
    strings and booleans where a number belongs)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be >= 1 (a whole number), got {value!r}")


def _check_unit(name: str, value: float, *, open_right: bool = False) -> None:
    value = _number(name, value)
    ok = math.isfinite(value) and value >= 0.0 and (value < 1.0 if open_right else value <= 1.0)
    if not ok:
        interval = "[0, 1)" if open_right else "[0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value}")


@dataclass(frozen=True)
class ShuntPolicy:
    """How the gate's output is turned into a route and a prompt.

    Attributes:
        labels: the label names, in the gate's output order.
        threshold: δ. An input whose confidence ``C_s >= threshold`` is answered by the gate alone.
        temperature: the fitted softmax temperature applied to the gate's logits.
        prune_epsilon: ε for hard pruning: a label whose probability is below ε may be removed
            from the candidates offered to the large model...
        class_recall: ...but only if the gate's recall on that class, measured at calibration,
            is at least ``min_reliable_recall``. Classes missing here are never pruned.
        min_reliable_recall: see ``class_recall``.
        min_candidates: hard pruning never leaves fewer candidates than this (nor an empty set).
        hint_top_k: how many labels the soft hint lists.
        target: the calibration target δ was chosen for, as data: ``target.to_json()`` of a
            :mod:`datashunt.training` target, e.g. ``{"kind": "budget", "max_llm_rate": 0.3}``
            (rebuild it with ``datashunt.training.target_from_json``). Policies written by
            earlier releases hold a description string here; they still load.
        metrics: calibration figures (NLL, ECE, coverage) kept for reports.
        guarantee: what a certified δ promises (``Guarantee.to_json()`` of
            :mod:`datashunt.training.guarantees.certify`), or ``None`` for an uncertified δ.
        conformal: split-conformal label sets (``ConformalSets.to_json()`` of
            :mod:`datashunt.training.guarantees.conformal`): when set, hard pruning offers the
            conformal
            set instead of the ε rule, and a set of one label is answered by the gate.
        gate_digest: the digest of the gate the policy was fitted on (its weights and label
            order, ``HFGate.weights_digest``); a shunt refuses a gate with another digest.
            ``None``: not pinned (gates without one, policies of earlier releases).

    Example:
        >>> policy = ShuntPolicy(labels=("negative", "positive"), threshold=0.9)
        >>> policy.routes_small(0.95)
        True
    """

    labels: tuple[str, ...]
    threshold: float = 0.9
    temperature: float = 1.0
    prune_epsilon: float = 0.05
    class_recall: Mapping[str, float] = field(default_factory=dict)
    min_reliable_recall: float = 0.9
    min_candidates: int = 2
    hint_top_k: int = 3
    target: Mapping[str, Any] | str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    guarantee: Mapping[str, Any] | None = None
    conformal: Mapping[str, Any] | None = None
    gate_digest: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", validate_labels(self.labels))
        _check_unit("threshold", self.threshold)
        _check_unit("prune_epsilon", self.prune_epsilon, open_right=True)
        _check_unit("min_reliable_recall", self.min_reliable_recall)
        temperature = _number("temperature", self.temperature)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature}")
        _check_count("min_candidates", self.min_candidates)
        _check_count("hint_top_k", self.hint_top_k)
        if not isinstance(self.class_recall, Mapping):
            raise ConfigError(f"class_recall must be a dict, got {self.class_recall!r}")
        unknown = sorted(set(self.class_recall) - set(self.labels))
        if unknown:
            raise ConfigError(
                f"class_recall names unknown labels {unknown}; known labels: {list(self.labels)}"
            )
        for lab, rec in self.class_recall.items():
            _check_unit(f"class_recall[{lab!r}]", float(rec))
        object.__setattr__(self, "class_recall", dict(self.class_recall))
        if isinstance(self.target, Mapping):
            if not isinstance(self.target.get("kind"), str):
                raise ConfigError(f"target must name its 'kind', got {dict(self.target)}")
            object.__setattr__(self, "target", dict(self.target))
        elif self.target is not None and not isinstance(self.target, str):
            raise ConfigError(
                "target must be a target's to_json() dict (e.g. Budget(0.3).to_json()), "
                f"got {type(self.target).__name__}"
            )
        object.__setattr__(self, "metrics", dict(self.metrics))
        if self.gate_digest is not None and not isinstance(self.gate_digest, str):
            raise ConfigError(f"gate_digest must be a string or null, got {self.gate_digest!r}")
        for name in ("guarantee", "conformal"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a dict (its to_json()), got {value!r}")
            object.__setattr__(self, name, dict(value) if value is not None else None)

    @property
    def version(self) -> str:
        """A content hash of the policy's JSON (12 hex digits): which policy made a decision."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def routes_small(self, confidence: float) -> bool:
        """Whether an input of gate confidence ``confidence`` is answered by the gate alone."""
        return confidence >= self.threshold

    def with_(self, **changes: Any) -> ShuntPolicy:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        if d["gate_digest"] is None:
            del d["gate_digest"]  # an unpinned policy keeps the JSON (and version) it had
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShuntPolicy:
        """Build a policy from :meth:`to_dict` output; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(f"unknown policy fields {extra}; known fields: {sorted(known)}")
        kwargs = dict(data)
        labels = kwargs.get("labels", ())
        kwargs["labels"] = labels if isinstance(labels, str) else tuple(labels)
        return cls(**kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON to ``path`` (a file, or a directory to hold ``POLICY_FILE``)."""
        p = Path(path)
        if p.is_dir():
            p = p / POLICY_FILE
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> ShuntPolicy:
        """Read a policy written by :meth:`save` (a file, or a directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / POLICY_FILE
        if not p.is_file():
            raise ConfigError(
                f"no shunt policy at {p}; run `datashunt calibrate --gate DIR ...` to create one"
            )
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"policy file {p} is not valid JSON ({exc}): it may be cut short; write it "
                "again (`datashunt calibrate`)"
            ) from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"policy file {p} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"policy file {p}: {exc}") from exc
        except (TypeError, ValueError) as exc:  # a field of the wrong shape (labels: 5)
            raise ConfigError(f"policy file {p} has a field of the wrong type: {exc}") from exc
