"""Gate versions, the champion, and shunts that follow it (see :mod:`.core`, :mod:`.follow`).

``datashunt gates list|show|add|promote|rollback`` is the command line; ``datashunt loop``
(:mod:`datashunt.loop`) adds challengers and promotes only better ones.
"""

from .core import GateRegistry, GateVersion, RegistryEvent
from .follow import Follower, as_registry

__all__ = ["Follower", "GateRegistry", "GateVersion", "RegistryEvent", "as_registry"]
