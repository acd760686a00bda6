"""Shadow start (no gate yet), takeover from the registry, and back to shadowing on drift."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from datashunt import CallStore, ConfigError, Shunt, ShuntPolicy
from datashunt.engine import DriftMonitor
from datashunt.engine.drift import DriftWarning
from datashunt.registry import GateRegistry
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")


def test_a_shadowing_shunt_asks_the_llm_as_the_users_chain_would(tmp_path: Path) -> None:
    llm = FakeLLM(lambda r: "negative" if "bad" in r.text else "sure: positive")
    store = tmp_path / "calls.sqlite"
    # prompt_mode="both" is what the shunt will use once it has a gate; shadowing ignores it
    shunt = Shunt.shadow(LABELS, llm=llm, store=store, prompt_mode="both")
    assert shunt.shadowing and shunt.serving.version == "shadow"
    out = shunt.run_batch(["a bad buy", "a great buy", "it came"])
    assert [r.route for r in out] == ["llm"] * 3  # type: ignore[union-attr]
    assert [r.label for r in out] == ["negative", "positive", "positive"]  # type: ignore[union-attr]
    for req in llm.requests:  # every label on offer, no hint
        assert req.candidates == LABELS and req.variables["hint"] == ""
    recs = list(CallStore(store).iter())
    assert sorted(r.input_text for r in recs) == ["a bad buy", "a great buy", "it came"]
    assert sorted(r.parsed_label for r in recs) == ["negative", "positive", "positive"]
    # exploration after takeover and the way back are on by default in this mode
    assert shunt.options.explore is not None and shunt.options.on_drift == "shadow"


def test_an_empty_registry_is_a_valid_thing_to_follow(tiny_bert: Path, tmp_path: Path) -> None:
    reg = GateRegistry(tmp_path / "reg")
    with pytest.raises(ConfigError, match="labels="):
        Shunt.from_registry(reg, llm=FakeLLM())
    shunt = Shunt.from_registry(reg, labels=LABELS, llm=FakeLLM("positive"))
    follower = shunt.follow(reg, start=False)
    assert shunt.shadowing and not follower.check()
    assert shunt.run("it came").source == "llm"
    # the first gate is registered (as `datashunt bootstrap` does): the shunt takes over
    gate = tmp_path / "g1"
    shutil.copytree(tiny_bert, gate)
    ShuntPolicy(labels=LABELS, threshold=0.0).save(gate)
    v = reg.add(gate)
    reg.promote(v.version)
    assert follower.check() and not shunt.shadowing
    assert shunt.serving.version == v.version
    assert shunt.run("it came").source == "small"


def _drifting_shunt(llm: FakeLLM) -> Shunt:
    monitor = DriftMonitor(
        [0.99] * 200, threshold=0.9, audit_reference=(2, 200), audit_window=40, audit_step=10
    )
    return Shunt(
        KeywordGate(),
        ShuntPolicy(labels=LABELS, threshold=0.9),
        llm=llm,
        audit_rate=1.0,
        drift=monitor,
        on_drift="shadow",
    )


def test_the_audit_alarm_sends_the_shunt_back_to_shadowing() -> None:
    llm = FakeLLM("negative")  # the LLM now disagrees with every confident "great"
    shunt = _drifting_shunt(llm)
    shunt._serving = shunt.serving.__class__(
        shunt.gate, shunt.policy, shunt.policy_version, version="v0001"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        for _ in range(6):
            shunt.run_batch(["a great buy"] * 10)
    assert shunt.watch.drift is not None and shunt.watch.drift.alarm is not None
    assert shunt.watch.drift.alarm.test == "audit"
    assert shunt.shadowing and "v0001" in shunt.refused
    before = len(llm.requests)
    assert shunt.run("a great buy").route == "llm"  # the gate no longer answers
    assert len(llm.requests) == before + 1


def test_on_drift_warn_keeps_the_gate() -> None:
    shunt = _drifting_shunt(FakeLLM("negative"))
    shunt = Shunt(
        shunt.gate,
        shunt.policy,
        llm=shunt.llm,
        options=shunt.options.with_(on_drift="warn"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        for _ in range(6):
            shunt.run_batch(["a great buy"] * 10)
    assert shunt.watch.drifted and not shunt.shadowing


def test_a_refused_version_is_not_served_again(tiny_bert: Path, tmp_path: Path) -> None:
    reg = GateRegistry(tmp_path / "reg")
    gate = tmp_path / "g1"
    shutil.copytree(tiny_bert, gate)
    ShuntPolicy(labels=LABELS, threshold=0.0).save(gate)
    v1 = reg.add(gate)
    reg.promote(v1.version)
    shunt = Shunt.from_registry(reg, llm=FakeLLM("positive"))
    follower = shunt.follow(reg, start=False)
    shunt.back_to_shadow("test")
    assert shunt.shadowing and not follower.check()  # v1 stays refused
    v2 = reg.add(gate, parent=v1.version)
    reg.promote(v2.version)
    assert follower.check() and shunt.serving.version == v2.version


def test_shadowing_needs_two_labels() -> None:
    with pytest.raises(ConfigError, match="two labels"):
        Shunt.shadow(["only"], llm=FakeLLM())


def test_after_takeover_a_decaying_share_of_the_gates_answers_goes_to_the_llm() -> None:
    from datashunt.engine.shadow import Exploration

    llm = FakeLLM("positive")
    shunt = Shunt.shadow(LABELS, llm=llm, explore=Exploration(start=0.5, floor=0.0, half_life=200))
    shunt.swap(KeywordGate(), ShuntPolicy(labels=LABELS, threshold=0.9), version="v0001")
    confident = ["a great buy"] * 200
    early = sum("audit" in r.extra for r in shunt.run_batch(confident))  # type: ignore[union-attr]
    shunt.run_batch(confident * 4)
    late = sum("audit" in r.extra for r in shunt.run_batch(confident))  # type: ignore[union-attr]
    # rate 0.5 -> 0.35 over the first 200 inputs; ~0.016 after 1,000 more
    assert 60 <= early <= 110 and late <= 12


def test_a_plain_shunt_audits_at_its_constant_rate() -> None:
    shunt = Shunt(KeywordGate(), ShuntPolicy(labels=LABELS, threshold=0.9), llm=FakeLLM(),
                  audit_rate=0.2, audit_seed=1)  # fmt: skip
    counts = [
        sum("audit" in r.extra for r in shunt.run_batch(["a great buy"] * 300))  # type: ignore[union-attr]
        for _ in range(3)
    ]
    assert all(40 <= c <= 80 for c in counts)  # no decay without ``explore``


def test_a_version_the_follower_cannot_load_is_named_with_the_reason_once(
    tiny_bert: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = GateRegistry(tmp_path / "reg")
    shunt = Shunt.from_registry(reg, labels=LABELS, llm=FakeLLM("positive"))
    follower = shunt.follow(reg, start=False)
    gate = tmp_path / "g1"
    shutil.copytree(tiny_bert, gate)
    ShuntPolicy(labels=LABELS, threshold=0.0).save(gate)
    reg.promote(reg.add(gate).version)

    def torn(version: str | None = None) -> object:
        raise ConfigError("model.safetensors is torn (12 bytes)")

    monkeypatch.setattr(reg, "load", torn)
    with caplog.at_level("WARNING", logger="datashunt"):
        for _ in range(3):
            with pytest.raises(ConfigError):
                follower.check()
    said = [r.getMessage() for r in caplog.records if "cannot serve" in r.getMessage()]
    assert len(said) == 1 and "torn (12 bytes)" in said[0] and "still serving shadow" in said[0]
    assert shunt.shadowing
