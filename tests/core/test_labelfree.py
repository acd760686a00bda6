"""datashunt.labelfree: the student learned from LLM answers, deferral, certified fidelity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import datashunt.labelfree as lf
from datashunt.errors import ConfigError, DataError
from datashunt.labelfree import (
    AgreementHead,
    EmbeddingStudent,
    Exploration,
    OCLHead,
    RoundConfig,
    answers_to_collect,
    certify_fidelity,
    fit_softmax_head,
    holdout_mask,
    margin_score,
    max_score,
    train_round,
    usable_answers,
)


def blobs(n: int, k: int = 2, d: int = 8, sep: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_public_api_is_pinned() -> None:
    assert sorted(lf.__all__) == sorted(
        [
            "SCORES",
            "AgreementHead",
            "EmbeddingStudent",
            "Exploration",
            "FidelityCertificate",
            "OCLHead",
            "Round",
            "RoundConfig",
            "answers_to_collect",
            "certify_fidelity",
            "fit_softmax_head",
            "holdout_mask",
            "margin_score",
            "max_score",
            "spent_confidence",
            "train_round",
            "usable_answers",
        ]
    )


def test_unreadable_answers_are_never_training_labels() -> None:
    rows, y = usable_answers(["pos", None, "", "neg", "maybe", "pos"], ("neg", "pos"))
    assert rows.tolist() == [0, 3, 5]
    assert y.tolist() == [1, 0, 1]
    x = np.array([[1.0], [-50.0], [-50.0], [-1.0], [-50.0], [1.0]])
    s = EmbeddingStudent(("neg", "pos")).fit(x, ["pos", None, "", "neg", "maybe", "pos"])
    assert s.n_answers == 3  # the three unreadable rows were skipped, not learnt as a label


def test_student_learns_and_warm_starts() -> None:
    x, y = blobs(600)
    w, b = fit_softmax_head(x[:400], y[:400], 2)
    acc = ((x[400:] @ w.T + b).argmax(axis=1) == y[400:]).mean()
    assert acc > 0.9
    s = EmbeddingStudent(("a", "b"))
    s.fit_indices(x[:400], y[:400])
    before = s.weight.copy()
    s.fit_indices(x[:450], y[:450])  # continues from the previous head
    assert s.history == [400, 450]
    assert np.corrcoef(before.ravel(), s.weight.ravel())[0, 1] > 0.9
    assert s.predict(x[:3]) == [("a", "b")[i] for i in s.predict_proba(x[:3]).argmax(axis=1)]


def test_student_says_what_to_do_without_answers() -> None:
    s = EmbeddingStudent(("a", "b"))
    with pytest.raises(DataError, match="shadow longer"):
        s.fit(np.zeros((3, 2)), ["a", "a", None])
    with pytest.raises(ConfigError, match="not been fitted"):
        s.predict_proba(np.zeros((1, 2)))
    with pytest.raises(ConfigError, match="two distinct labels"):
        EmbeddingStudent(("a", "a"))


def test_scores() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert max_score(p).tolist() == pytest.approx([0.7, 0.4])
    assert margin_score(p).tolist() == pytest.approx([0.5, 0.05])


def _confidence_data(n: int, seed: int = 0):
    """Probabilities whose top label agrees with the 'LLM' more often when confident."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.5, 1.0, n)
    p = np.stack([top, 1 - top], axis=1)
    agree = rng.random(n) < top
    llm = np.where(agree, 0, 1)
    return p, llm


def test_agreement_head_learns_disagreement() -> None:
    p, llm = _confidence_data(2000)
    head = AgreementHead().fit(p, llm)
    s = head.score(np.array([[0.55, 0.45], [0.98, 0.02]]))
    assert s[1] > s[0] + 0.2
    assert s.min() >= 0.0 and s.max() <= 1.0


def test_ocl_head_defers_the_unsure_and_explores_less_over_time() -> None:
    p, llm = _confidence_data(1500, seed=1)
    ocl = OCLHead(2, seed=0)
    for _ in range(3):
        ocl.partial_fit(p, llm)
    d = ocl.defer_probability(np.array([[0.52, 0.48], [0.99, 0.01]]))
    assert d[0] > d[1]
    assert ocl.explore_probability(0) == 1.0 > ocl.explore_probability(5) == pytest.approx(0.8**5)


def test_certify_fidelity_certifies_an_agreeing_student() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(size=3000)
    agree = rng.random(3000) < np.where(score > 0.5, 0.99, 0.7)
    cert = certify_fidelity({"max": score}, agree, target=0.95, confidence=0.95)
    assert cert.certified and cert.threshold < 1.0
    assert cert.agreement is not None and cert.agreement >= 0.95
    assert cert.bound >= 0.95
    assert 0.3 < cert.small_share < 0.6
    assert answers_to_collect(cert, holdout_share=0.3) == 0
    assert "fidelity >= 95.0%" in cert.describe()
    assert "agreement, not accuracy" in cert.guarantee.method


def test_certify_fidelity_says_how_many_answers_are_missing() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(size=40)
    agree = rng.random(40) < 0.985
    cert = certify_fidelity({"max": score}, agree, target=0.95, confidence=0.95)
    assert not cert.certified and cert.threshold == 1.0
    assert cert.holdout_needed is not None and cert.holdout_needed > 40
    more = answers_to_collect(cert, holdout_share=0.5, readable_share=0.9)
    assert more == int(np.ceil((cert.holdout_needed - 40) / 0.5 / 0.9))
    # enough answers at the rates seen, yet the sequence stopped: a quarter more, not "0 more"
    stuck = dataclasses.replace(cert, holdout_needed=30, n_holdout=40)
    assert answers_to_collect(stuck, holdout_share=0.5) == 20
    assert "stopped on errors above it" in stuck.describe()
    # an agreement below the target: no number of answers can certify it
    bad = certify_fidelity({"max": score}, np.zeros(40, bool), target=0.95, confidence=0.95)
    assert bad.holdout_needed is None and answers_to_collect(bad, holdout_share=0.5) is None


def test_several_scores_pay_for_the_choice() -> None:
    rng = np.random.default_rng(1)
    score = rng.uniform(size=2000)
    agree = rng.random(2000) < np.where(score > 0.5, 0.99, 0.6)
    one = certify_fidelity({"max": score}, agree, target=0.95, confidence=0.95)
    noise = rng.uniform(size=2000)
    three = certify_fidelity(
        {"noise": noise, "max": score, "noise2": noise[::-1].copy()},
        agree,
        target=0.95,
        confidence=0.95,
    )
    assert three.score == "max"
    # each score is tested at a third of α: the kept share cannot be larger than alone
    assert three.small_share <= one.small_share
    with pytest.raises(ConfigError, match="fidelity target"):
        certify_fidelity({"max": score}, agree, target=1.2, confidence=0.95)


def test_holdout_and_exploration() -> None:
    m = holdout_mask(100, 0.3, seed=4)
    assert m.sum() == 30
    assert (holdout_mask(100, 0.3, seed=4) == m).all()
    e = Exploration(start=0.2, floor=0.02, half_life=100)
    assert e.rate(0) == pytest.approx(0.2)
    assert e.rate(100) == pytest.approx(0.11)
    assert e.rate(10**6) == pytest.approx(0.02)
    with pytest.raises(ConfigError, match="floor <= start"):
        Exploration(start=0.01, floor=0.1)


def test_train_round_end_to_end() -> None:
    x, y = blobs(3000, k=3, sep=3.0, seed=2)
    rng = np.random.default_rng(3)
    llm = np.where(rng.random(3000) < 0.98, y, (y + 1) % 3)  # the LLM's answers: no gold used
    r = train_round(x[:2000], llm[:2000], x[2000:], llm[2000:], ("a", "b", "c"), RoundConfig())
    assert r.certificate.certified
    keep = r.keep(x[2000:])
    assert keep.mean() == pytest.approx(r.certificate.small_share)
    kept_agree = (r.student.predict_proba(x[2000:][keep]).argmax(axis=1) == llm[2000:][keep]).mean()
    assert kept_agree >= 0.95
    # too few held-out answers: nothing kept
    few = train_round(x[:200], llm[:200], x[200:210], llm[200:210], ("a", "b", "c"), RoundConfig())
    assert not few.certificate.certified and not few.keep(x[:50]).any()
    with pytest.raises(ConfigError, match="unknown deferral score"):
        RoundConfig(scores=("entropy",))


def test_the_score_chosen_on_training_answers_is_certified_alone(monkeypatch) -> None:
    from datashunt.labelfree import rounds

    # margin tells agreement apart, max ranks it backwards: the choice must see that
    wrong = np.tile([0.6, 0.39, 0.01], (200, 1))  # sure-looking, but a near tie: disagrees
    right = np.tile([0.55, 0.225, 0.225], (200, 1))  # less sure, a clear winner: agrees
    probs = np.concatenate([wrong, right])
    y = np.concatenate([np.full(200, 1), np.zeros(200, dtype=int)])
    assert rounds.choose_score(["max", "margin"], (probs, y), 0.9) == "margin"
    assert rounds.choose_score(["margin", "max"], None, 0.9) == "margin"  # nothing to judge
    x, yb = blobs(2000, k=3, sep=3.0, seed=2)
    seen: list[list[str]] = []
    real = rounds.certify_fidelity

    def spy(scores, agree, **kw):
        seen.append(sorted(scores))
        return real(scores, agree, **kw)

    monkeypatch.setattr(rounds, "certify_fidelity", spy)
    labels = ("a", "b", "c")
    for choose in ("holdout", "train"):
        cfg = RoundConfig(scores=("max", "margin"), choose=choose)
        r = train_round(x[:1400], yb[:1400], x[1400:], yb[1400:], labels, cfg)
        assert r.certificate.certified
    assert seen == [["margin", "max"], ["max"]]  # no earlier probabilities: max, at full α
    with pytest.raises(ConfigError, match="choose must be"):
        RoundConfig(choose="gold")
