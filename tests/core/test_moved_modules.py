"""The module paths of release 0.1 still import for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from datashunt._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_an_alias_of_the_new_module(old: str) -> None:
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n    print(w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"{old} moved to {MOVED[old]}" in out.stdout


def test_old_names_resolve_to_the_same_objects() -> None:
    with pytest.warns(DeprecationWarning, match="datashunt.openai_compat moved"):
        old = importlib.import_module("datashunt.openai_compat")
    from datashunt.llm import OpenAICompatLLM

    assert old.OpenAICompatLLM is OpenAICompatLLM
    with pytest.warns(DeprecationWarning, match="datashunt.shunt moved"):
        from datashunt.shunt import Shunt  # type: ignore[import-not-found]
    import datashunt

    assert Shunt is datashunt.Shunt
