"""What a registry holds: a version's record, a promotion or rollback, and the digest of a
gate's files (:mod:`datashunt.registry.core` keeps them; the backends store them)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["Action", "GateVersion", "RegistryEvent", "champion_history", "dir_digest"]

Action = Literal["promote", "rollback"]


@dataclass(frozen=True)
class GateVersion:
    """One registered gate.

    Attributes:
        version: its name in the registry (``v0001``, ``v0002``, ... in order of registration).
        created_at: when it was registered (ISO 8601, UTC).
        parent: the version it was trained from, if any.
        digest: a SHA-256 over its files: the same files give the same digest.
        labels: its label set (every version of a registry shares one).
        policy_version: the content hash of its policy (``ShuntPolicy.version``).
        provenance: how it was made (``store``, ``records``, ``since``, ``through``,
            ``method``, ...).
        metrics: what was measured on it when it was registered.
        note: free text.
    """

    version: str
    created_at: str
    parent: str | None
    digest: str
    labels: tuple[str, ...]
    policy_version: str | None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (read back with :meth:`from_json`)."""
        return {
            "version": self.version,
            "created_at": self.created_at,
            "parent": self.parent,
            "digest": self.digest,
            "labels": list(self.labels),
            "policy_version": self.policy_version,
            "provenance": dict(self.provenance),
            "metrics": dict(self.metrics),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateVersion:
        """Inverse of :meth:`to_json`."""
        return cls(
            version=str(data["version"]),
            created_at=str(data["created_at"]),
            parent=data.get("parent"),
            digest=str(data["digest"]),
            labels=tuple(data.get("labels", ())),
            policy_version=data.get("policy_version"),
            provenance=dict(data.get("provenance") or {}),
            metrics=dict(data.get("metrics") or {}),
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class RegistryEvent:
    """A promotion or rollback: ``version`` became the champion, replacing ``previous``."""

    seq: int
    at: str
    action: Action
    version: str
    previous: str | None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "version": self.version,
            "previous": self.previous,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistryEvent:
        """Inverse of :meth:`to_json`."""
        action = str(data["action"])
        if action not in ("promote", "rollback"):
            raise ConfigError(f"unknown registry event {action!r}")
        return cls(
            int(data["seq"]),
            str(data["at"]),
            action,  # type: ignore[arg-type]
            str(data["version"]),
            data.get("previous"),
            str(data.get("reason", "")),
        )


def champion_history(events: Sequence[RegistryEvent]) -> list[str]:
    """The champions in order, the serving one last: promotions push, rollbacks return."""
    stack: list[str] = []
    for ev in events:
        if ev.action == "rollback" and ev.version in stack:
            del stack[len(stack) - stack[::-1].index(ev.version) :]
        else:
            stack.append(ev.version)
    return stack


def dir_digest(path: Path, exclude: Iterable[str] = ()) -> str:
    """SHA-256 over a directory's files (relative names and bytes, in sorted order), leaving
    out the top-level files named in ``exclude``."""
    h = hashlib.sha256()
    skip = {path / name for name in exclude}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p not in skip):
        h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
