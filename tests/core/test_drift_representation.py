"""The representation test inside a running shunt: the gate's features, from the decide pass."""

from __future__ import annotations

import logging
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datashunt import DriftMonitor, DriftWarning, Shunt, ShuntPolicy
from datashunt.engine.representation import EmbeddingDrift
from datashunt.engine.watch import REFERENCE_KEY, monitor_for
from datashunt.errors import ConfigError
from datashunt.gates import BaseGate, EmbeddingGate, FloatArray, HFGate
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")
WIDTH = 16


class VectorGate(KeywordGate):
    """KeywordGate's logits, plus a deterministic 16-d representation per text: standard
    normal (seeded by the text), moved along the first four directions for ``moved`` texts."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def _logits_and_features(self, texts: list[str]) -> tuple[FloatArray, FloatArray]:
        self.passes += 1
        feats = np.empty((len(texts), WIDTH))
        for i, t in enumerate(texts):
            feats[i] = np.random.default_rng(zlib.crc32(t.encode())).normal(size=WIDTH)
            if "moved" in t:
                feats[i, :4] += 0.6
        return self._logits(texts), feats


def _texts(tag: str, n: int) -> list[str]:
    words = ("good", "bad", "plain", "great")
    return [f"{tag} {words[i % 4]} {i}" for i in range(n)]


def _shunt(gate: BaseGate, **kw: Any) -> Shunt:
    return Shunt(gate, ShuntPolicy(labels=LABELS), llm=FakeLLM("positive"), **kw)


def _representation(gate: BaseGate) -> EmbeddingDrift:
    return EmbeddingDrift.from_texts(gate, _texts("calib", 400), components=8, window=100, step=25)


def test_a_shift_in_features_raises_the_alarm_through_the_listeners() -> None:
    gate = VectorGate()
    shunt = _shunt(gate)
    shunt.watch.representation = _representation(gate)
    seen: list[Any] = []
    shunt.watch.listeners.append(seen.append)
    passes = gate.passes
    for start in range(0, 600, 50):  # 600 new inputs from the same source: no alarm
        shunt.run_batch(_texts("live", 600)[start : start + 50])
    assert gate.passes - passes == 12  # one forward pass per batch, features included
    assert seen == [] and not shunt.watch.drifted and shunt.watch.representation.seen == 600
    with pytest.warns(DriftWarning, match="inputs drifted"):
        for start in range(0, 300, 50):
            results = shunt.run_batch(_texts("moved", 300)[start : start + 50])
    assert len(seen) == 1 and seen[0].test == "representation" and 600 < seen[0].at <= 900
    assert shunt.watch.drifted and results[-1].receipt is not None
    assert results[-1].receipt.drift


async def test_the_async_path_feeds_the_representation_too() -> None:
    gate = VectorGate()
    shunt = _shunt(gate)
    shunt.watch.representation = _representation(gate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        await shunt.arun_batch(_texts("moved", 200))
    assert shunt.watch.representation.alarm is not None and shunt.watch.drifted


def test_decide_is_unchanged_and_asks_no_features_when_the_hook_is_off() -> None:
    texts = _texts("x", 40)
    off_gate, on_gate = VectorGate(), VectorGate()
    off = _shunt(off_gate, drift=DriftMonitor([0.98] * 200))
    on = _shunt(on_gate, drift=DriftMonitor([0.98] * 200))
    on.watch.representation = _representation(on_gate)
    before = on_gate.passes
    assert off.decide(texts) == on.decide(texts) == _shunt(KeywordGate()).decide(texts)
    assert off_gate.passes == 0 and on_gate.passes == before + 1
    assert off.watch.drift is not None and off.watch.drift.seen == 40 == on.watch.drift.seen


def test_a_gate_without_a_representation_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="no input representation"):
        EmbeddingDrift.from_texts(KeywordGate(), ["good"] * 30)
    shunt = _shunt(KeywordGate())
    shunt.watch.representation = _representation(VectorGate())
    with caplog.at_level(logging.WARNING, logger="datashunt"):
        for _ in range(3):
            assert [d.label for d in shunt.decide(["good", "bad"])] == ["positive", "negative"]
    notes = [r for r in caplog.records if "representation test not fed" in r.getMessage()]
    assert len(notes) == 1 and shunt.watch.representation.seen == 0  # logged once
    wide = _shunt(VectorGate())
    wide.watch.representation = EmbeddingDrift(np.random.default_rng(0).normal(size=(50, 32)))
    assert len(wide.decide(["good"])) == 1 and wide.watch.representation.seen == 0


def test_swap_rebuilds_the_policy_monitor_in_one_place() -> None:
    policy = ShuntPolicy(labels=LABELS, metrics={REFERENCE_KEY: [0.98] * 200, "n": 1000})
    shunt = Shunt(KeywordGate(), policy, drift=True)
    assert shunt.watch.drift is not None and shunt.watch.drift.reference_n == 1000
    new = policy.with_(threshold=0.8, metrics={REFERENCE_KEY: [0.9] * 100, "n": 700})
    shunt.swap(KeywordGate(), new)
    mon = shunt.watch.drift
    assert mon is not None and mon.reference_n == 700 and mon.threshold == 0.8
    shunt.swap(KeywordGate(), ShuntPolicy(labels=LABELS))  # keeps no confidences: kept
    assert shunt.watch.drift is mon and monitor_for(ShuntPolicy(labels=LABELS)) is None
    half = monitor_for(policy, alpha=0.025)  # the docs' split of 0.05 with the representation
    assert half is not None and half.alpha == 0.025 and half.reference_n == 1000
    own = DriftMonitor([0.98] * 200)
    mine = Shunt(KeywordGate(), policy, drift=own)
    mine.swap(KeywordGate(), new)  # the user's own monitor is left alone
    assert mine.watch.drift is own


def test_hf_gate_gives_mean_pooled_hidden_states_from_the_same_pass(tiny_bert: Path) -> None:
    gate = HFGate(tiny_bert, max_batch_tokens=16)  # several buckets: rows must stay in order
    texts = ["good movie", "bad", "great great good film indeed", "awful"] * 3
    probs, feats = gate.predict_proba_and_features(texts)
    assert np.allclose(probs, gate.predict_proba(texts), atol=1e-6)
    assert feats is not None and feats.shape == (12, gate.model.config.hidden_size)
    assert np.allclose(feats[:4], feats[4:8]) and not np.allclose(feats[0], feats[1])
    one = gate.predict_proba_and_features(["bad"])[1]
    assert one is not None and np.allclose(one[0], feats[1], atol=1e-5)  # padding excluded


class _Encoder:
    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        return np.array([[len(t), t.count("good"), 1.0] for t in texts], dtype=float)


def test_embedding_gate_features_are_its_embeddings() -> None:
    gate = EmbeddingGate.__new__(EmbeddingGate)  # the backbone is stubbed: no model loaded
    BaseGate.__init__(gate, LABELS)
    gate.weight, gate.bias = np.array([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]]), np.zeros(2)
    gate.batch_size, gate.encoder = 8, _Encoder()
    probs, feats = gate.predict_proba_and_features(["good good", "bad"])
    assert feats is not None and np.allclose(feats, gate.embed(["good good", "bad"]))
    assert np.allclose(probs, gate.predict_proba(["good good", "bad"]))
