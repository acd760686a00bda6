"""Issue 27, items 3 and 4: the registry promotes only what it can serve, a torn file does not
take it down, and concurrent adds cannot mix label sets."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import pytest

from datashunt import ConfigError, Shunt, ShuntPolicy
from datashunt.cli import main
from datashunt.registry import GateRegistry
from datashunt.registry.core import dir_digest
from tests.conftest import FakeLLM

LABELS = ("negative", "positive")


def gate_dir(tiny_bert: Path, dest: Path, threshold: float = 0.8) -> Path:
    shutil.copytree(tiny_bert, dest)
    ShuntPolicy(labels=LABELS, threshold=threshold).save(dest)
    return dest


@pytest.fixture
def reg(tiny_bert: Path, tmp_path: Path) -> GateRegistry:
    """A folder registry: v0001 the champion, v0002 and v0003 added."""
    r = GateRegistry(tmp_path / "reg")
    for i, t in enumerate((0.7, 0.8, 0.9)):
        r.add(gate_dir(tiny_bert, tmp_path / f"g{i}", t))
    r.promote("v0001")
    return r


def _promote_cli(reg: GateRegistry, version: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["gates", "promote", "--registry", reg.location, version])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("datashunt: error:"), err
    return err[0]


def test_promote_refuses_a_truncated_gate(
    reg: GateRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = reg.path("v0002") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _promote_cli(reg, "v0002", capsys)
    assert "v0002 cannot serve" in line and "changed after it was added" in line
    assert reg.champion() == "v0001"


def test_promote_refuses_a_version_without_its_policy(
    reg: GateRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    (reg.path("v0003") / "datashunt_policy.json").unlink()
    assert "v0003 cannot serve" in _promote_cli(reg, "v0003", capsys)
    assert reg.champion() == "v0001"


def test_promote_refuses_another_label_set_and_rollback_checks_too(
    reg: GateRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    # a version with other labels got in (as the old unlocked check let it): its record is
    # consistent, its digest matches, only its labels differ
    src, dest = reg.path("v0003"), reg.path("v0003").with_name("v0004")
    shutil.copytree(src, dest)
    ShuntPolicy(labels=("anger", "joy"), threshold=0.8).save(dest)
    config = json.loads((dest / "config.json").read_text())
    config["id2label"] = {"0": "anger", "1": "joy"}
    config["label2id"] = {"anger": 0, "joy": 1}
    (dest / "config.json").write_text(json.dumps(config))
    record = json.loads((dest / "datashunt_version.json").read_text())
    (dest / "datashunt_version.json").unlink()
    record |= {"version": "v0004", "labels": ["anger", "joy"], "digest": dir_digest(dest)}
    (dest / "datashunt_version.json").write_text(json.dumps(record))
    line = _promote_cli(reg, "v0004", capsys)
    assert "labels ['anger', 'joy'] differ from the registry's" in line
    reg.promote("v0002")  # a good one still goes
    (reg.path("v0001") / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ConfigError, match="v0001 cannot serve"):
        reg.rollback()
    assert reg.champion() == "v0002"


def test_torn_events_tail_and_broken_version_leave_the_registry_working(
    reg: GateRegistry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg.promote("v0002")
    events = tmp_path / "reg" / "events.jsonl"
    with events.open("a") as fh:
        fh.write('{"seq": 3, "at": "2026-12-0')  # a write cut short
    record = reg.path("v0003") / "datashunt_version.json"
    record.write_text(record.read_text()[:40])  # a non-champion version's record, truncated

    fresh = GateRegistry(tmp_path / "reg")
    with caplog.at_level(logging.WARNING, "datashunt.registry"):
        assert fresh.champion() == "v0002"
        assert [v.version for v in fresh.versions()] == ["v0001", "v0002"]
        shunt = Shunt.from_registry(fresh, llm=FakeLLM())
    assert shunt.run("good").label in LABELS
    assert "last event is torn" in caplog.text and "v0003 is unreadable" in caplog.text
    with pytest.raises(ConfigError, match="v0003.*cannot be read"):
        fresh.promote("v0003")

    assert main(["gates", "list", "--registry", str(tmp_path / "reg")]) == 0
    out, err = capsys.readouterr()
    assert "* v0002" in out and "v0003" not in out
    assert all(line.startswith("datashunt: warning:") for line in err.splitlines())
    assert "torn" in err and "v0003" in err

    # the next write cuts the torn fragment off instead of gluing its event onto it
    fresh.rollback()
    assert [e.seq for e in GateRegistry(tmp_path / "reg").events()] == [1, 2, 3]
    assert events.read_text().endswith("\n") and fresh.champion() == "v0001"


def test_a_broken_line_before_the_tail_is_an_error_naming_the_file(
    reg: GateRegistry, tmp_path: Path
) -> None:
    reg.promote("v0002")
    events = tmp_path / "reg" / "events.jsonl"
    lines = events.read_text().splitlines()
    events.write_text("\n".join([lines[0][:10], lines[1]]) + "\n")
    with pytest.raises(ConfigError, match=r"events.jsonl: event 1 of 2 is unreadable"):
        GateRegistry(tmp_path / "reg").champion()


def test_sql_registry_skips_an_unreadable_version(tiny_bert: Path, tmp_path: Path) -> None:
    import sqlite3

    reg = GateRegistry(f"sqlite:///{tmp_path / 'reg.db'}", cache_dir=tmp_path / "cache")
    for i in range(2):
        reg.add(gate_dir(tiny_bert, tmp_path / f"g{i}"))
    reg.promote("v0001")
    with sqlite3.connect(tmp_path / "reg.db") as db:
        db.execute("UPDATE datashunt_gate_versions SET meta='{\"vers' WHERE version='v0002'")
    fresh = GateRegistry(reg.location, cache_dir=tmp_path / "cache")
    assert [v.version for v in fresh.versions()] == ["v0001"] and fresh.champion() == "v0001"
    assert "v0002" in fresh.problems


def _policy_only_gate(dest: Path, labels: tuple[str, ...]) -> Path:
    dest.mkdir()
    ShuntPolicy(labels=labels).save(dest)
    (dest / "weights.bin").write_bytes(b"\0" * (1 << 20))  # a copy that takes a moment
    return dest


@pytest.mark.parametrize("backend", ["folder", "sqlite"])
def test_concurrent_adds_never_mix_label_sets(tmp_path: Path, backend: str) -> None:
    a = _policy_only_gate(tmp_path / "a", LABELS)
    b = _policy_only_gate(tmp_path / "b", ("anger", "joy"))
    mixed = 0
    for trial in range(20):
        where = tmp_path / f"reg{trial}"
        location = str(where) if backend == "folder" else f"sqlite:///{where}.db"
        start = threading.Barrier(2, timeout=30)
        refused: list[str] = []

        def add(
            src: Path,
            location: str = location,
            start: threading.Barrier = start,
            refused: list[str] = refused,
        ) -> None:
            # both open the new registry at once too (its tables are created by one of them)
            registry = GateRegistry(location, cache_dir=tmp_path / "cache")
            start.wait()
            try:
                registry.add(src)
            except ConfigError as exc:
                refused.append(str(exc))
            finally:
                registry.close()

        threads = [threading.Thread(target=add, args=(src,)) for src in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with GateRegistry(location, cache_dir=tmp_path / "cache") as after:
            label_sets = {v.labels for v in after.versions()}
        mixed += len(label_sets) > 1
        assert len(refused) == 1 and "one registry serves one label set" in refused[0]
    assert mixed == 0
