"""A registry of gate versions: what each gate is, where it came from, and which one serves.

A version is an immutable copy of a gate directory (model, tokenizer, policy) with its
provenance: the parent version, the store records that trained it, its metrics. The champion
is the version a shunt that follows the registry serves (:class:`~datashunt.registry.Follower`).
Promotions and rollbacks are events in an append-only log; the champion is derived from it:
a promotion pushes a version on the history, a rollback returns to an earlier one.

Two backends hold the same thing: a folder (``runs/registry``) or any SQLAlchemy database
(``sqlite:///gates.db``, ``postgresql+psycopg://...``), where each version is a compressed
archive unpacked once into a local cache before it loads.

Example:
    >>> reg = GateRegistry("runs/registry")  # doctest: +SKIP
    >>> v = reg.add("runs/gate", note="first gate")  # doctest: +SKIP
    >>> reg.promote(v.version, reason="initial")  # doctest: +SKIP
    >>> gate, policy = reg.load()  # the champion  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError
from ..policy import POLICY_FILE, ShuntPolicy
from ..store.records import utc_now

if TYPE_CHECKING:
    from ..gates import Gate
    from .backends import Backend

__all__ = ["GateRegistry", "GateVersion", "RegistryEvent", "dir_digest"]

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


def dir_digest(path: Path) -> str:
    """SHA-256 over a directory's files (relative names and bytes, in sorted order)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class GateRegistry:
    """Versioned gates and the champion, in a folder or a SQLAlchemy database.

    Args:
        location: a folder, or a database URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        cache_dir: where a database registry unpacks versions before loading them (default
            ``~/.cache/datashunt/registry``).
    """

    def __init__(self, location: str | Path, *, cache_dir: str | Path | None = None) -> None:
        from .backends import FolderBackend, SQLBackend

        self.location = str(location)
        self._backend: Backend
        if "://" in self.location:
            self._backend = SQLBackend(self.location, cache_dir=cache_dir)
        else:
            self._backend = FolderBackend(Path(location))

    def __repr__(self) -> str:
        return f"GateRegistry({self.location!r})"

    def close(self) -> None:
        """Release the database connections (a folder registry holds none)."""
        self._backend.close()

    def __enter__(self) -> GateRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- versions ---------------------------------------------------------------------------

    def add(
        self,
        gate_dir: str | Path,
        *,
        parent: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> GateVersion:
        """Register a copy of ``gate_dir`` (it must hold a policy) as a new version.

        Raises:
            ConfigError: no gate directory or no policy there, an unknown parent, or labels
                that differ from the registry's.
        """
        src = Path(gate_dir)
        if not (src / POLICY_FILE).is_file():
            raise ConfigError(
                f"{src} holds no {POLICY_FILE}: register a calibrated gate directory "
                "(`datashunt calibrate --gate DIR ...` writes the policy)"
            )
        policy = ShuntPolicy.load(src)
        known = self.versions()
        if parent is not None and parent not in {v.version for v in known}:
            raise ConfigError(f"unknown parent version {parent!r}: {self._known(known)}")
        if known and tuple(known[0].labels) != tuple(policy.labels):
            raise ConfigError(
                f"the gate's labels {list(policy.labels)} differ from the registry's "
                f"{list(known[0].labels)}: one registry serves one label set"
            )
        meta = GateVersion(
            version="",
            created_at=utc_now().isoformat(),
            parent=parent,
            digest=dir_digest(src),
            labels=tuple(policy.labels),
            policy_version=policy.version,
            provenance=dict(provenance or {}),
            metrics=dict(metrics or {}),
            note=note,
        )
        return self._backend.add(meta, src)

    def versions(self) -> list[GateVersion]:
        """Every registered version, oldest first."""
        return self._backend.versions()

    def get(self, version: str) -> GateVersion:
        """One version's record.

        Raises:
            ConfigError: no such version (the message lists the known ones).
        """
        for v in self.versions():
            if v.version == version:
                return v
        raise ConfigError(f"no gate version {version!r} in {self.location}: {self._known()}")

    def path(self, version: str | None = None) -> Path:
        """A local directory holding ``version``'s files (default the champion)."""
        return self._backend.path(self.get(self._resolve(version)).version)

    def load(self, version: str | None = None, **gate_options: Any) -> tuple[Gate, ShuntPolicy]:
        """The gate and policy of ``version`` (default the champion), ready for a shunt;
        ``gate_options`` go to :func:`~datashunt.gates.load_gate` (``max_length``, ...)."""
        from ..gates import load_gate

        path = self.path(version)
        return load_gate(path, **gate_options), ShuntPolicy.load(path)

    # ---- the champion -----------------------------------------------------------------------

    def events(self) -> list[RegistryEvent]:
        """Every promotion and rollback, oldest first."""
        return self._backend.events()

    def history(self) -> list[str]:
        """The champions in order, the serving one last (rolled-back ones removed)."""
        return champion_history(self.events())

    def champion(self) -> str | None:
        """The serving version, or ``None`` before the first promotion."""
        hist = self.history()
        return hist[-1] if hist else None

    def marker(self) -> str:
        """Changes whenever the events change: a cheap test for followers."""
        return self._backend.marker()

    def promote(self, version: str, *, reason: str = "") -> RegistryEvent:
        """Make ``version`` the champion.

        Raises:
            ConfigError: no such version.
        """
        self.get(version)
        return self._backend.append_event(lambda evs: self._event(evs, "promote", version, reason))

    def rollback(self, to: str | None = None, *, reason: str = "") -> RegistryEvent:
        """Return to the previous champion (or to ``to``, an earlier one).

        Raises:
            ConfigError: nothing to roll back to, or ``to`` was never a champion before the
                current one.
        """

        def make(evs: list[RegistryEvent]) -> RegistryEvent:
            hist = champion_history(evs)
            if to is None:
                if len(hist) < 2:
                    raise ConfigError(
                        "nothing to roll back to: the registry has had "
                        f"{'one champion' if hist else 'no champion'} so far"
                    )
                target = hist[-2]
            else:
                if to not in hist[:-1]:
                    raise ConfigError(
                        f"{to!r} is not an earlier champion (history: {hist}): "
                        "promote it instead (`datashunt gates promote`)"
                    )
                target = to
            return self._event(evs, "rollback", target, reason)

        return self._backend.append_event(make)

    # ---- helpers ----------------------------------------------------------------------------

    def _resolve(self, version: str | None) -> str:
        if version is not None:
            return version
        champ = self.champion()
        if champ is None:
            raise ConfigError(
                f"the registry {self.location} has no champion yet: "
                "`datashunt gates promote VERSION` (or pass a version)"
            )
        return champ

    def _known(self, known: Sequence[GateVersion] | None = None) -> str:
        names = [v.version for v in (known if known is not None else self.versions())]
        return f"known versions {names}" if names else "the registry is empty"

    @staticmethod
    def _event(
        evs: Sequence[RegistryEvent], action: Action, version: str, reason: str
    ) -> RegistryEvent:
        hist = champion_history(evs)
        seq = evs[-1].seq + 1 if evs else 1
        prev = hist[-1] if hist else None
        return RegistryEvent(seq, utc_now().isoformat(), action, version, prev, reason)
