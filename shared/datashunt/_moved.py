"""The module paths of release 0.1 that moved in the engine redesign, kept for one release.

``import datashunt.retry`` (and the rest below) still works: the old name is an alias of the
new module, and importing it warns with :class:`DeprecationWarning` naming the new path. To be
removed in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

#: old module -> the module that now holds its public names
MOVED = {
    "datashunt.shunt": "datashunt.engine",
    "datashunt.idle": "datashunt.engine.idle",
    "datashunt.retry": "datashunt.llm.retry",
    "datashunt.openai_compat": "datashunt.llm.client",
    "datashunt.llm_cache": "datashunt.llm",
    "datashunt.llm_server": "datashunt.llm.server",
    "datashunt.train": "datashunt.training.train",
    "datashunt.calibration": "datashunt.training",
    "datashunt.distill": "datashunt.training",
    "datashunt.distill_data": "datashunt.training.distill_data",
    "datashunt.distill_report": "datashunt.training.distill_report",
    "datashunt.distill_train": "datashunt.training.distill_train",
    "datashunt.distill_cli": "datashunt.cli.distill",
    "datashunt.benchmark_cli": "datashunt.benchmark.cli",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names and loads them as the new modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import from there (the old path goes in the next "
            "release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already loaded."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
