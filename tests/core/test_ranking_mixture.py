"""The ensemble gate and the dev choice of a mixture / per-class temperatures (issue 18),
each checked against an independent computation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import datashunt.gates as gates_pkg
from datashunt.benchmark.ranking import choose_mixture, class_temperatures, routing_accuracy
from datashunt.errors import ConfigError
from datashunt.gates.base import BaseGate, FloatArray
from datashunt.gates.ensemble import EnsembleGate, is_ensemble_dir


class TableGate(BaseGate):
    """Logits looked up per text."""

    def __init__(self, table: dict[str, Sequence[float]], temperature: float = 1.0) -> None:
        super().__init__(["negative", "positive"], temperature)
        self.table = table

    def _logits(self, texts: list[str]) -> FloatArray:
        return np.array([self.table[t] for t in texts], dtype=np.float64)


A = TableGate({"x": [2.0, 0.0], "y": [0.0, 1.0]})
B = TableGate({"x": [0.0, 3.0], "y": [1.0, 1.0]}, temperature=2.0)


def _sm(z: Sequence[float], t: float = 1.0) -> np.ndarray:
    e = np.exp(np.asarray(z) / t)
    return e / e.sum()


def test_ensemble_prob_mode_is_the_weighted_mean_of_member_probabilities() -> None:
    gate = EnsembleGate([A, B], [3.0, 1.0])  # normalised to 0.75 / 0.25
    want = 0.75 * _sm([2.0, 0.0]) + 0.25 * _sm([0.0, 3.0], 2.0)  # B keeps its temperature
    np.testing.assert_allclose(gate.predict_proba(["x"])[0], want, rtol=1e-12)


def test_ensemble_logit_mode_is_the_normalised_geometric_mean() -> None:
    gate = EnsembleGate([A, B], [0.5, 0.5], mode="logit")
    g = np.sqrt(_sm([0.0, 1.0]) * _sm([1.0, 1.0], 2.0))
    np.testing.assert_allclose(gate.predict_proba(["y"])[0], g / g.sum(), rtol=1e-12)


def test_ensemble_memo_runs_each_member_once_per_text() -> None:
    calls: list[list[str]] = []

    class Counting(TableGate):
        def _logits(self, texts: list[str]) -> FloatArray:
            calls.append(list(texts))
            return super()._logits(texts)

    member = Counting(dict(A.table))
    gate = EnsembleGate([member, B], [0.5, 0.5], memo=True)
    first = gate.predict_proba(["x", "y", "x"])
    again = gate.predict_proba(["y", "x"])
    assert calls == [["x", "y"]]  # asked once, about each distinct text
    np.testing.assert_allclose(again, first[[1, 0]])
    plain = EnsembleGate([A, B], [0.5, 0.5])
    np.testing.assert_allclose(first, plain.predict_proba(["x", "y", "x"]), rtol=1e-12)


def test_ensemble_rejects_mismatched_members_and_weights() -> None:
    other = TableGate({"x": [0.0, 0.0]})
    other._labels = ("positive", "negative")  # same labels, other order
    with pytest.raises(ConfigError, match="share labels"):
        EnsembleGate([A, other], [1, 1])
    with pytest.raises(ConfigError, match="non-negative"):
        EnsembleGate([A, B], [1.0, -1.0])
    with pytest.raises(ConfigError, match="2 non-negative"):
        EnsembleGate([A, B], [1.0])


def test_ensemble_save_and_load_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = EnsembleGate([A, B], [0.6, 0.4], mode="logit", member_dirs=["dir-a", "dir-b"])
    gate.temperature = 1.5
    gate.save(tmp_path / "ens")
    assert is_ensemble_dir(tmp_path / "ens") and not is_ensemble_dir(tmp_path)
    meta = json.loads((tmp_path / "ens" / "datashunt_gate.json").read_text())
    assert [m["temperature"] for m in meta["members"]] == [1.0, 2.0]
    seen = {}

    def fake_load(path: str, temperature: float) -> BaseGate:
        seen[path] = temperature
        return TableGate(dict((A if path == "dir-a" else B).table), temperature)

    real_load_gate = gates_pkg.load_gate
    monkeypatch.setattr(gates_pkg, "load_gate", fake_load)
    assert isinstance(real_load_gate(tmp_path / "ens"), EnsembleGate)  # any command loads it
    back = EnsembleGate.load(tmp_path / "ens")
    assert seen == {"dir-a": 1.0, "dir-b": 2.0}
    np.testing.assert_allclose(back.predict_proba(["x", "y"]), gate.predict_proba(["x", "y"]))


def _brute_routing(probs: np.ndarray, y: np.ndarray, llm: np.ndarray, budget: float) -> float:
    """Send the floor(budget * n) least-confident inputs (ties: none split) to the LLM."""
    conf = probs.max(axis=1)
    small = probs.argmax(axis=1) == y
    k = int(np.floor(budget * len(y) + 1e-9))
    cut = np.sort(conf)[k] if k < len(y) else np.inf
    routed = conf < cut
    return float(np.where(routed, llm, small).mean())


def test_routing_accuracy_matches_a_brute_force_count() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=60)
    y = rng.integers(0, 3, 60)
    right = rng.random(60) < 0.7
    readable = rng.random(60) < 0.9
    acc, au = routing_accuracy(probs, y, right, readable, (0.2, 0.5))
    small = probs.argmax(axis=1) == y
    llm = np.where(readable, right, small)  # an unreadable answer falls back to the gate
    want = np.mean([_brute_routing(probs, y, llm, b) for b in (0.2, 0.5)])
    assert acc == pytest.approx(want)
    pos, neg = probs.max(axis=1)[small], probs.max(axis=1)[~small]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert au == pytest.approx(pairs)


def test_choose_mixture_finds_the_member_that_ranks_and_keeps_the_first_on_ties() -> None:
    # both members predict the same labels; member 1 is most confident exactly where it is
    # wrong, member 2's confidence marks those inputs: only member 2 alone routes them all
    rng = np.random.default_rng(1)
    n = 100
    y = rng.integers(0, 2, n)
    gate_wrong = np.zeros(n, dtype=bool)
    gate_wrong[:20] = True
    pred = np.where(gate_wrong, 1 - y, y)
    conf1 = np.where(gate_wrong, 0.99, rng.uniform(0.55, 0.7, n))
    conf2 = np.where(gate_wrong, 0.55, 0.95)
    p1 = np.stack([np.where(pred == 0, conf1, 1 - conf1), np.where(pred == 1, conf1, 1 - conf1)], 1)
    p2 = np.stack([np.where(pred == 0, conf2, 1 - conf2), np.where(pred == 1, conf2, 1 - conf2)], 1)
    right = np.ones(n, dtype=bool)
    readable = np.ones(n, dtype=bool)
    choice = choose_mixture([p1, p2], y, right, readable, (0.2,), step=0.5)
    assert choice.weights == (0.0, 1.0)
    assert choice.dev_accuracy == pytest.approx(1.0)
    assert choice.dev_accuracy == pytest.approx(_brute_routing(p2, y, right, 0.2))
    # with identical members no mixture beats the first member alone: it is kept
    same = choose_mixture([p1, p1], y, right, readable, (0.2,), step=0.5)
    assert same.weights == (1.0, 0.0)
    assert len(same.table) == 1 + 2 * 2  # the first alone, then (0.5, 0.5) and (0, 1) x 2 modes


def test_class_temperatures_minimise_the_nll_against_a_grid() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    # class 0's logits are three times overconfident, class 1's are about right
    z = rng.normal(0, 1, (400, 2))
    z[np.arange(400), y] += 1.5
    z[:, 0] *= 3.0
    t = class_temperatures(z, y)

    def nll(tt: np.ndarray) -> float:
        q = z / tt
        q = q - q.max(axis=1, keepdims=True)
        lp = q - np.log(np.exp(q).sum(axis=1, keepdims=True))
        return float(-lp[np.arange(400), y].mean())

    grid = np.exp(np.linspace(-2, 2, 161))
    best = min(nll(np.array([a, b])) for a in grid for b in grid)
    assert nll(t) <= best + 1e-6
    assert t[0] > 1.5 * t[1]  # the overconfident class gets the larger temperature
