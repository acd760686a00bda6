"""The gate registry (folder and SQL), promote / rollback, and hot swaps under concurrent calls."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datashunt import ConfigError, Shunt, ShuntPolicy
from datashunt.registry import Follower, GateRegistry
from datashunt.registry.core import dir_digest
from tests.conftest import FakeLLM

LABELS = ("negative", "positive")


def gate_dir(tiny_bert: Path, dest: Path, threshold: float) -> Path:
    shutil.copytree(tiny_bert, dest)
    ShuntPolicy(labels=LABELS, threshold=threshold).save(dest)
    return dest


@pytest.fixture(params=["folder", "sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> GateRegistry:
    if request.param == "folder":
        return GateRegistry(tmp_path / "reg")
    return GateRegistry(f"sqlite:///{tmp_path / 'reg.db'}", cache_dir=tmp_path / "cache")


def test_add_list_get_and_files(registry: GateRegistry, tiny_bert: Path, tmp_path: Path) -> None:
    a = registry.add(gate_dir(tiny_bert, tmp_path / "a", 0.7), note="first")
    b = registry.add(gate_dir(tiny_bert, tmp_path / "b", 0.8), parent=a.version)
    assert [v.version for v in registry.versions()] == ["v0001", "v0002"]
    assert registry.get("v0002").parent == "v0001"
    assert registry.get("v0001").note == "first"
    assert a.digest != b.digest  # the policies differ
    assert a.policy_version == ShuntPolicy.load(tmp_path / "a").version
    # the stored files are the given files: same digest once the version file is left out
    copy = tmp_path / "copy"
    shutil.copytree(registry.path("v0002"), copy)
    (copy / "datashunt_version.json").unlink()
    assert dir_digest(copy) == b.digest
    gate, policy = registry.load("v0001")
    assert tuple(gate.labels) == LABELS and policy.threshold == 0.7
    again = GateRegistry(registry.location, cache_dir=tmp_path / "cache")
    assert [v.to_json() for v in again.versions()] == [v.to_json() for v in registry.versions()]


def test_bad_adds_say_what_to_do(registry: GateRegistry, tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibrate"):
        registry.add(tiny_bert)  # no policy beside the model
    registry.add(gate_dir(tiny_bert, tmp_path / "a", 0.7))
    with pytest.raises(ConfigError, match="unknown parent"):
        registry.add(tmp_path / "a", parent="v0009")
    other = tmp_path / "other"
    shutil.copytree(tiny_bert, other)
    ShuntPolicy(labels=("x", "y")).save(other)
    with pytest.raises(ConfigError, match="one registry serves one label set"):
        registry.add(other)
    with pytest.raises(ConfigError, match=r"known versions \['v0001'\]"):
        registry.get("v0042")


def test_promote_and_rollback(registry: GateRegistry, tiny_bert: Path, tmp_path: Path) -> None:
    for i, t in enumerate((0.6, 0.7, 0.8)):
        registry.add(gate_dir(tiny_bert, tmp_path / f"g{i}", t))
    assert registry.champion() is None
    with pytest.raises(ConfigError, match="no champion yet"):
        registry.path()
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        registry.rollback()
    registry.promote("v0001", reason="initial")
    with pytest.raises(ConfigError, match="one champion"):
        registry.rollback()
    registry.promote("v0002")
    ev = registry.promote("v0003", reason="better")
    assert (ev.action, ev.version, ev.previous, ev.reason) == (
        "promote",
        "v0003",
        "v0002",
        "better",
    )
    assert registry.champion() == "v0003"
    back = registry.rollback(reason="regression")
    assert (back.version, back.previous) == ("v0002", "v0003")
    assert registry.champion() == "v0002"
    assert registry.history() == ["v0001", "v0002"]
    registry.rollback()
    assert registry.champion() == "v0001"
    registry.promote("v0003")
    registry.rollback(to="v0001")
    assert registry.champion() == "v0001"
    with pytest.raises(ConfigError, match="not an earlier champion"):
        registry.rollback(to="v0002")
    with pytest.raises(ConfigError, match="no gate version"):
        registry.promote("v0077")
    assert [e.seq for e in registry.events()] == list(range(1, 8))
    assert GateRegistry(registry.location, cache_dir=tmp_path / "cache").champion() == "v0001"


def test_concurrent_adds_get_distinct_names(tiny_bert: Path, tmp_path: Path) -> None:
    reg = GateRegistry(tmp_path / "reg")
    src = gate_dir(tiny_bert, tmp_path / "a", 0.7)
    names: list[str] = []
    threads = [
        threading.Thread(target=lambda: names.append(reg.add(src).version)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == ["v0001", "v0002", "v0003", "v0004"]


class ConstGate:
    """Always the same probabilities (a protocol gate)."""

    def __init__(self, row: Sequence[float]) -> None:
        self.labels = LABELS
        self.row = np.asarray(row, dtype=float)
        self.loads = 0

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.row, (len(texts), 1))


class FakeRegistry:
    """A registry of two in-memory versions (what a Follower needs of one)."""

    def __init__(self) -> None:
        self.gates = {
            "v0001": (ConstGate([0.02, 0.98]), ShuntPolicy(labels=LABELS, threshold=0.9)),
            "v0002": (ConstGate([0.45, 0.55]), ShuntPolicy(labels=LABELS, threshold=0.95)),
        }
        self.champ = "v0001"
        self.loads = 0

    def marker(self) -> str:
        return self.champ

    def champion(self) -> str:
        return self.champ

    def get(self, version: str) -> Any:
        assert version in self.gates
        return type("V", (), {"version": version})()

    def load(self, version: str) -> tuple[ConstGate, ShuntPolicy]:
        self.loads += 1
        return self.gates[version]


def test_follower_swaps_on_promotion_and_pin_holds() -> None:
    reg = FakeRegistry()
    a_gate, a_pol = reg.gates["v0001"]
    shunt = Shunt(a_gate, a_pol, llm=FakeLLM("negative"))
    follower = Follower(shunt, reg, interval=0.01)  # type: ignore[arg-type]
    assert shunt.serving.version is None  # built from a gate, not from the registry
    assert follower.check() is True and shunt.serving.version == "v0001"
    loads = reg.loads
    assert follower.check() is False and reg.loads == loads  # marker unchanged: no reload
    reg.champ = "v0002"
    assert follower.check() is True
    assert shunt.serving.version == "v0002" and shunt.policy.threshold == 0.95
    assert shunt.run("anything").source == "llm"  # the new gate is unsure: the LLM answers
    pinned = Follower(shunt, reg, pin="v0001")  # type: ignore[arg-type]
    assert pinned.check() is True and shunt.serving.version == "v0001"
    reg.champ = "v0002"
    assert pinned.check() is False  # pinned: promotions are ignored
    with follower:  # the background thread follows within a few intervals
        for _ in range(200):
            if shunt.serving.version == "v0002":
                break
            threading.Event().wait(0.01)
    assert shunt.serving.version == "v0002"


def test_swap_refuses_other_labels() -> None:
    shunt = Shunt(ConstGate([0.1, 0.9]), ShuntPolicy(labels=LABELS))
    other = ConstGate([0.1, 0.9])
    other.labels = ("a", "b")  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="keeps the label set"):
        shunt.swap(other, ShuntPolicy(labels=("a", "b")))


def _check_consistent(results: list[Any], small_v: str, llm_v: str) -> tuple[int, int]:
    """Every result used one gate's policy throughout: the confident gate answered alone
    under its own policy; the unsure one asked the LLM, prompt and receipt under its own."""
    small = llm = 0
    for r in results:
        version = r.receipt.policy_version
        assert r.decision.policy_version == version
        if r.route == "small":
            assert version == small_v and r.label == "positive"
            assert r.receipt.threshold == 0.9
            small += 1
        else:
            assert version == llm_v and r.receipt.threshold == 0.95
            assert r.decision.confidence == pytest.approx(0.55)
            llm += 1
    return small, llm


def test_hot_swap_under_concurrent_calls_sync_and_async() -> None:
    """Threads and tasks keep calling while the gate is swapped back and forth hundreds of
    times: no result mixes the two gates (decision, prompt policy, receipt)."""
    reg = FakeRegistry()
    (a_gate, a_pol), (b_gate, b_pol) = reg.gates["v0001"], reg.gates["v0002"]
    llm = FakeLLM("negative", delay=0.001)
    shunt = Shunt(a_gate, a_pol, llm=llm, allm=llm.acall, max_concurrency=4)
    stop = threading.Event()
    results: list[Any] = []
    lock = threading.Lock()

    def caller() -> None:
        while not stop.is_set():
            out = shunt.run_batch([f"text {i}" for i in range(5)])
            with lock:
                results.extend(out)

    async def acaller() -> None:
        while not stop.is_set():
            out = await shunt.arun_batch([f"async {i}" for i in range(5)])
            with lock:
                results.extend(out)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    threads.append(threading.Thread(target=lambda: asyncio.run(acaller())))
    for t in threads:
        t.start()
    for i in range(300):
        gate, pol = (b_gate, b_pol) if i % 2 == 0 else (a_gate, a_pol)
        shunt.swap(gate, pol, version=f"v{i}")
        threading.Event().wait(0.001)
    stop.set()
    for t in threads:
        t.join()
    small, asked = _check_consistent(results, a_pol.version, b_pol.version)
    assert small > 0 and asked > 0, (small, asked)
    assert len(llm.requests) >= asked


def test_reading_a_missing_folder_registry_creates_nothing(tmp_path: Path) -> None:
    reg = GateRegistry(tmp_path / "nowhere")
    assert reg.versions() == [] and reg.champion() is None and reg.events() == []
    with pytest.raises(ConfigError, match="the registry is empty"):
        reg.get("v0001")
    assert not (tmp_path / "nowhere").exists()
