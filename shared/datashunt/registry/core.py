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

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..policy import POLICY_FILE, ShuntPolicy
from ..store.records import utc_now
from .versions import Action, GateVersion, RegistryEvent, champion_history, dir_digest

if TYPE_CHECKING:
    from ..gates import Gate
    from .backends import Backend

__all__ = ["GateRegistry", "GateVersion", "RegistryEvent", "dir_digest"]

log = logging.getLogger("datashunt.registry")


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
        #: what reads skipped (a torn events tail, an unreadable version record), by message
        self.problems: dict[str, str] = {}
        self._backend: Backend
        if "://" in self.location:
            self._backend = SQLBackend(self.location, self._skip, cache_dir=cache_dir)
        else:
            self._backend = FolderBackend(Path(location), self._skip)

    def _skip(self, what: str, message: str) -> None:
        """A part of the registry that cannot be read is left out, and said once."""
        if message not in self.problems.values():
            log.warning("datashunt: registry %s: %s", self.location, message)
        self.problems[what] = message

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

        def check(known: list[GateVersion]) -> None:
            # called by the backend under its lock (in its transaction): two adds at once of
            # gates with different labels into an empty registry cannot both pass
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
        return self._backend.add(meta, src, check)

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
        if version in self.problems:
            raise ConfigError(f"gate version {version!r} cannot be read: {self.problems[version]}")
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

    def verify(self, version: str) -> GateVersion:
        """Check that ``version`` can serve: its files are the ones registered (the digest
        recorded at :meth:`add`), its policy loads, its labels are the registry's, its gate
        loads with those labels.

        Raises:
            ConfigError: what is wrong with it, and what to do.
        """
        from ..gates import load_gate
        from .backends import VERSION_FILE

        v = self.get(version)
        path = self._backend.path(version)
        refuse = f"{version} cannot serve"
        digest = dir_digest(path, exclude=(VERSION_FILE,))
        if digest != v.digest:
            raise ConfigError(
                f"{refuse}: its files in {path} changed after it was added (digest "
                f"{digest[:12]}, recorded {v.digest[:12]}): add the gate again"
            )
        try:
            policy = ShuntPolicy.load(path)
            gate = load_gate(path)
        except Exception as exc:  # a loader's own error type, whatever the backend
            raise ConfigError(f"{refuse}: it does not load ({type(exc).__name__}: {exc})") from exc
        first = self.versions()[0]
        for what, labels in (("policy", policy.labels), ("gate", tuple(gate.labels))):
            if tuple(labels) != tuple(first.labels):
                raise ConfigError(
                    f"{refuse}: its {what}'s labels {list(labels)} differ from the registry's "
                    f"{list(first.labels)} (set by {first.version}): one registry serves one "
                    "label set"
                )
        return v

    def promote(self, version: str, *, reason: str = "") -> RegistryEvent:
        """Make ``version`` the champion, once :meth:`verify` passes (under the registry's
        lock: what is checked is what is promoted).

        Raises:
            ConfigError: no such version, or one that cannot serve (see :meth:`verify`).
        """
        self.get(version)
        return self._backend.append_event(
            self._verified(version, lambda evs: self._event(evs, "promote", version, reason))
        )

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
            return self._verified(target, lambda e: self._event(e, "rollback", target, reason))(evs)

        return self._backend.append_event(make)

    def _verified(
        self, version: str, make: Callable[[list[RegistryEvent]], RegistryEvent]
    ) -> Callable[[list[RegistryEvent]], RegistryEvent]:
        """``make``, after :meth:`verify` (once: a database backend may call it again)."""
        done: list[bool] = []

        def checked(evs: list[RegistryEvent]) -> RegistryEvent:
            if not done:
                self.verify(version)
                done.append(True)
            return make(evs)

        return checked

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
