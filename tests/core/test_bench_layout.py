"""Experiments have one home: ``bench/``, a layer over the library that the library never
imports, that imports nothing from ``tests/``, and whose every script parses its own
``main(argv)``."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.common import command, csv_list, sample
from datashunt.data import Dataset, Example

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("shared", "langchain_datashunt", "llamaindex_datashunt")
#: bench scripts whose ``main(argv)`` these tests run with ``--help`` (``gate_speed`` and
#: ``stream`` are pinned by their own tests)
SCRIPTS = sorted(
    p.stem
    for p in (ROOT / "bench").glob("*.py")
    if p.stem not in ("__init__", "common", "faultproxy", "gate_speed", "stream")
    and "def main(" in p.read_text(encoding="utf-8")
)


def imported_modules(source: str, package: str) -> Iterator[str]:
    """Every module a file of ``package`` imports, made absolute, wherever the import stands
    (in a function too: the bench imports lazily)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            else:
                yield node.module or ""


def imports_of(path: Path) -> Iterator[str]:
    """:func:`imported_modules` of a file of this repository."""
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return imported_modules(path.read_text(encoding="utf-8"), package)


def test_the_import_scanner_sees_every_form() -> None:
    source = (
        "import tests.conftest\n"
        "from bench import common\n"
        "def f():\n"
        "    from . import run\n"
        "    from ..support import fakes\n"
    )
    assert list(imported_modules(source, "tests.core")) == [
        "tests.conftest",
        "bench",
        "tests.core",
        "tests.support",
    ]


@pytest.mark.parametrize("top", SHIPPED)
def test_what_ships_never_imports_bench_or_tests(top: str) -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in sorted((ROOT / top).rglob("*.py"))
        for m in imports_of(p)
        if m.split(".")[0] in ("bench", "tests")
    ]
    assert offenders == []


def test_bench_never_imports_tests() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in sorted((ROOT / "bench").rglob("*.py"))
        for m in imports_of(p)
        if m.split(".")[0] == "tests"
    ]
    assert offenders == []


def test_the_demo_and_the_generative_bench_left_the_wheel() -> None:
    # tomllib is 3.11+: the one line of the wheel's packages, read as text
    toml = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = toml.split("[tool.hatch.build.targets.wheel]", 1)[1].split("\n[", 1)[0]
    packages = re.findall(r'"([^"]+)"', section.split("packages", 1)[1].split("]", 1)[0])
    assert "shared/datashunt" in packages
    assert not [p for p in packages if p.split("/")[0] in ("bench", "tests")]
    assert not (ROOT / "langchain_datashunt" / "demo.py").exists()
    assert not (ROOT / "shared" / "datashunt" / "generative" / "bench.py").exists()
    # the demo imports no CLI module (it used to reach into benchmark.recorded_cli)
    cli = [m for m in imports_of(ROOT / "bench" / "demo.py") if "cli" in m.split(".")[-1]]
    assert cli == []


def test_every_script_is_found() -> None:
    assert {"demo", "deferral", "deferral_cache", "generative", "guarantees", "loop"} <= set(
        SCRIPTS
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_parses_its_own_argv(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert f"bench.{name}" in capsys.readouterr().out  # the usage line names the module
    with pytest.raises(SystemExit) as bad:
        module.main(["--no-such-option"])
    assert bad.value.code == 2


def _data(n: int) -> Dataset:
    return Dataset(tuple(Example(f"t{i}", "ab"[i % 2]) for i in range(n)), ("a", "b"), "d")


def test_sample_draws_a_seeded_permutation() -> None:
    data = _data(20)
    drawn = sample(data, 5, seed=3)
    idx = np.random.default_rng(3).permutation(20)[:5]
    assert drawn.texts == [f"t{i}" for i in idx]
    assert sample(data, 5, seed=3, in_file_order=True).texts == [f"t{i}" for i in sorted(idx)]
    even = sample(data, 50, seed=0, keep=lambda e: e.label == "a")
    assert len(even) == 10 and {e.label for e in even.examples} == {"a"}
    assert (drawn.labels, drawn.name) == (data.labels, data.name)


def test_small_helpers() -> None:
    assert csv_list(" mr, isear,,") == ["mr", "isear"]
    assert command("bench.loop", ["--rounds", "3"]) == "python -m bench.loop --rounds 3"
    assert command("bench.loop", []) == "python -m bench.loop"
