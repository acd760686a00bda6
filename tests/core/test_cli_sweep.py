"""Every subcommand, given bad input, prints one ``datashunt: error:`` line and exits 2.

A sweep over the whole CLI (issue 17): a missing file, a missing gate, an unknown data set, a
bad store URL, a bad target. Run as a real process, so that a traceback anywhere is seen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datashunt.cli import build_parser

MISSING = "/nonexistent/datashunt"


def _cases(tmp: Path) -> dict[str, list[list[str]]]:
    absent_store = str(tmp / "absent" / "c.sqlite")
    # a folder registry is created when first opened: an empty one, beside ``absent``
    empty_registry = str(tmp / "registry")
    return {
        "gates": [
            ["show", "--registry", empty_registry],  # no champion, no version
            ["promote", "v9", "--registry", empty_registry],
            ["rollback", "--registry", empty_registry],
            ["add", f"{MISSING}/gate", "--registry", empty_registry],
            ["list", "--registry", "foo://bar"],
        ],
        "loop": [  # refused before any gate is trained: no data, then no champion
            ["--store", absent_store, "--registry", empty_registry]
            + ["--calib-data", f"{MISSING}/d.csv"],
            ["--store", absent_store, "--registry", empty_registry]
            + ["--calib-data", "amazon-mds:dev"],
        ],
        "train-gate": [
            ["--data", f"{MISSING}/d.csv", "--out", str(tmp / "g")],
            ["--data", "no-such-set", "--out", str(tmp / "g")],
        ],
        "calibrate": [
            ["--gate", f"{MISSING}/gate", "--data", "amazon-mds"],
            ["--gate", f"{MISSING}/gate", "--data", "amazon-mds", "--target", "precision:1.7"],
        ],
        "predict": [["--gate", f"{MISSING}/gate", "some text"]],
        "store": [
            ["stats", "--store", absent_store],
            ["stats", "--store", "foo://bar"],
            ["export", "--store", absent_store, "--out", str(tmp / "o.jsonl")],
        ],
        "distill": [
            ["--store", absent_store, "--gate", f"{MISSING}/gate", "--out", str(tmp / "d")],
            [
                *("--store", absent_store, "--gate", f"{MISSING}/gate", "--out", str(tmp / "d")),
                *("--dev-data", "amazon-mds:dev"),
            ],
        ],
        "monitor": [["--store", absent_store]],
        "bench": [["--data", f"{MISSING}/d.csv", "--llm-column", "llm_label", "--no-plot"]],
        "llm-server": [["--model", f"{MISSING}/m.gguf"]],
        "bootstrap": [  # a student from the LLM's answers alone: no store, bad store, one label
            ["--store", absent_store, "--labels", "a,b", "--registry", empty_registry],
            ["--store", "foo://bar", "--labels", "a,b", "--registry", empty_registry],
            ["--store", absent_store, "--labels", "a", "--registry", empty_registry],
        ],
        "batch": [
            ["--data", f"{MISSING}/d.csv", "--out", str(tmp / "o.parquet")]
            + ["--gate", f"{MISSING}/gate", "--llm-column", "a"],
            ["--data", f"{MISSING}/d.csv", "--out", str(tmp / "o.parquet")]
            + ["--gate", str(tmp), "--llm-column", "a", "--budget", "0.3"],
        ],
    }


def test_the_sweep_covers_every_subcommand(tmp_path: Path) -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert set(sub.choices) == set(_cases(tmp_path))  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", sorted(_cases(Path("unused"))))
def test_bad_input_is_one_error_line_and_exit_2(command: str, tmp_path: Path) -> None:
    for args in _cases(tmp_path)[command]:
        proc = subprocess.run(
            [sys.executable, "-m", "datashunt", command, *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("datashunt: error:")]
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert len(errors) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
    assert not (tmp_path / "absent").exists()  # reading commands create nothing
