"""datashunt.labelfree.tuned: MiniLM's top layers fine-tuned on the LLM's answers (real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datashunt.errors import DataError
from datashunt.labelfree import RoundConfig, train_round

pytestmark = pytest.mark.slow
tuned = pytest.importorskip("datashunt.labelfree.tuned")

LABELS = ("negative", "positive")
GOOD = ["wonderful", "delightful", "brilliant", "moving", "superb", "charming", "great", "lovely"]
BAD = ["dreadful", "boring", "awful", "tedious", "clumsy", "terrible", "dull", "painful"]


def corpus() -> tuple[list[str], np.ndarray]:
    texts, y = [], []
    for i, (g, b) in enumerate(zip(GOOD * 3, BAD * 3, strict=True)):
        texts += [f"a {g} film, take {i}", f"a {b} film, take {i}"]
        y += [1, 0]
    return texts, np.array(y)


@pytest.fixture(scope="module")
def feats(tmp_path_factory: pytest.TempPathFactory) -> tuned.FrozenFeatures:
    texts, _ = corpus()
    cfg = tuned.TuneConfig(tuned_layers=1, first_epochs=2, epochs=1, batch_size=8)
    return tuned.FrozenFeatures(texts, cfg, cache=tmp_path_factory.mktemp("frozen"))


def test_it_learns_and_the_features_are_cached(feats: tuned.FrozenFeatures) -> None:
    texts, y = corpus()
    rows = np.arange(len(texts))
    train, test = rows[:32], rows[32:]
    s = tuned.TunedStudent(LABELS, feats).fit_indices(train, y[train])
    probs = s.predict_proba(test)
    assert probs.shape == (len(test), 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y[test]).mean() >= 0.8
    assert feats.path is not None and feats.path.is_file()
    again = tuned.FrozenFeatures(texts, feats.config, cache=feats.path.parent)
    assert np.array_equal(again.flat, feats.flat) and again.path == feats.path


def test_successor_continues_and_leaves_the_champion_alone(feats: tuned.FrozenFeatures) -> None:
    _, y = corpus()
    rows = np.arange(len(y))
    champion = tuned.TunedStudent(LABELS, feats).fit_indices(rows[:16], y[:16])
    before = champion.predict_proba(rows)
    challenger = champion.successor(seed=1).fit_indices(rows[:40], y[:40])
    assert np.array_equal(champion.predict_proba(rows), before)
    assert challenger.history == [16, 40] and challenger.n_answers == 40
    assert not np.allclose(challenger.predict_proba(rows), before)


def test_one_label_is_refused(feats: tuned.FrozenFeatures) -> None:
    with pytest.raises(DataError, match="shadow longer"):
        tuned.TunedStudent(LABELS, feats).fit_indices(np.arange(4), np.zeros(4, dtype=int))


def test_saved_gate_is_an_embedding_gate_with_the_same_answers(
    feats: tuned.FrozenFeatures, tmp_path: Path
) -> None:
    from datashunt.gates.embedding import EmbeddingGate

    texts, y = corpus()
    rows = np.arange(len(texts))
    s = tuned.TunedStudent(LABELS, feats).fit_indices(rows[:32], y[:32])
    import shutil

    saved = s.save_gate(tmp_path / "gate")
    moved = shutil.move(saved, tmp_path / "moved")  # as the registry copies it: still whole
    gate = EmbeddingGate.load(moved)
    assert tuple(gate.labels) == LABELS
    assert np.allclose(gate.predict_proba(texts), s.predict_proba(rows), atol=2e-3)


def test_a_round_with_the_tuned_student(feats: tuned.FrozenFeatures) -> None:
    _, y = corpus()
    rows = np.arange(len(y))
    cfg = RoundConfig(target=0.6, confidence=0.9, estimate_needed=False)
    r = train_round(
        rows[:32],
        y[:32],
        rows[32:],
        y[32:],
        LABELS,
        cfg,
        new_student=tuned.TunedStudent(LABELS, feats),
    )
    assert isinstance(r.student, tuned.TunedStudent)
    assert r.head is None and r.certificate.score == "max"  # no prequential probs: no "agree"
    nxt = train_round(rows[:40], y[:40], rows[40:], y[40:], LABELS, cfg, previous=r.student)
    assert nxt.student is not r.student and nxt.student.history == [32, 40]


def test_replay_zero_trains_on_the_new_answers_alone(feats: tuned.FrozenFeatures) -> None:
    import dataclasses

    _, y = corpus()
    rows = np.arange(len(y))
    cfg = dataclasses.replace(feats.config, replay=0.0)
    seen: list[int] = []
    s = tuned.TunedStudent(LABELS, feats).fit_indices(rows[:16], y[:16])
    s.features = tuned.FrozenFeatures.__new__(tuned.FrozenFeatures)
    s.features.__dict__.update(feats.__dict__, config=cfg)
    batch = s.features.batch
    s.features.batch = lambda r: (seen.extend(r), batch(r))[1]  # type: ignore[method-assign]
    s.fit_indices(rows[:24], y[:24])
    assert set(seen) - set(range(16, 24)) == set()  # nothing older than the 8 new answers
