"""Keep a running shunt on the registry's champion (or pinned to one version).

A :class:`Follower` checks the registry's event log (one ``stat`` of a file, or one small
query) every ``interval`` seconds in a daemon thread; when the champion changed it loads the new
gate off the request path and hands it to :meth:`Shunt.swap <datashunt.Shunt.swap>`, which
replaces gate and policy in one assignment between decisions. A failed load is logged and
retried at the next check; the shunt keeps serving the gate it has.

Example:
    >>> shunt = Shunt.from_registry("runs/registry", llm=my_llm)  # doctest: +SKIP
    >>> follower = shunt.follow("runs/registry", interval=10)  # doctest: +SKIP
    >>> follower.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

from .core import GateRegistry

__all__ = ["Follower", "as_registry"]

log = logging.getLogger("datashunt")


class _Serving(Protocol):
    @property
    def version(self) -> str | None: ...


class Swappable(Protocol):
    """What a follower needs of a shunt (any :class:`~datashunt.Shunt` is one): what it
    serves, the versions it refuses, and a swap."""

    @property
    def serving(self) -> _Serving: ...

    refused: set[str]

    def swap(self, gate: Any, policy: Any = None, *, version: str | None = None) -> Any: ...


def as_registry(registry: GateRegistry | str | Path) -> GateRegistry:
    """A :class:`GateRegistry` for a registry, a folder or a database URL."""
    return GateRegistry(registry) if isinstance(registry, str | Path) else registry


class Follower:
    """Swaps a shunt's gate when the registry's champion changes.

    Args:
        shunt: any :class:`~datashunt.Shunt` (the adapters' ``.shunt`` too).
        registry: the registry to follow.
        interval: seconds between checks in the background thread.
        pin: serve this version and ignore promotions (``None``: follow the champion).
    """

    def __init__(
        self,
        shunt: Swappable,
        registry: GateRegistry | str | Path,
        *,
        interval: float = 5.0,
        pin: str | None = None,
    ) -> None:
        self.shunt = shunt
        self.registry = as_registry(registry)
        self.interval = interval
        self.pin = pin
        self.swaps = 0
        self._marker: str | None = None
        self._served: str | None = None
        self._failed: tuple[str, str] | None = None
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def target(self) -> str | None:
        """The version the shunt should serve now."""
        if self.pin is not None:
            return self.registry.get(self.pin).version
        return self.registry.champion()

    def check(self) -> bool:
        """Swap now if the target changed; ``True`` when a swap happened."""
        with self._check_lock:
            marker = self.registry.marker()
            serving = self.shunt.serving.version
            if marker == self._marker and serving == self._served:
                return False
            target = self.target()
            if target is None or target == serving or target in self.shunt.refused:
                # a version the shunt went back to shadowing from stays refused until the
                # registry promotes another
                self._marker, self._served = marker, serving
                return False
            try:
                gate, policy = self.registry.load(target)  # slow part: before the swap
                self.shunt.swap(gate, policy, version=target)
            except Exception as exc:
                if self._failed != (marker, target):  # said once per registry change
                    log.warning(
                        "datashunt: cannot serve %s from %s (%s); still serving %s",
                        target,
                        self.registry,
                        exc,
                        serving or "?",
                    )
                    self._failed = (marker, target)
                raise
            self._marker, self._served = marker, target
            self.swaps += 1
            return True

    def start(self) -> Follower:
        """Check every ``interval`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="datashunt-follow", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # keep serving the current gate; try again next time
                # check() said why, once per registry change: the traceback only when debugging
                log.debug("datashunt: following %s failed", self.registry, exc_info=True)

    def stop(self) -> None:
        """Stop the background checks (the shunt keeps its current gate)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.interval))

    def __enter__(self) -> Follower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
