"""The pure parts of ``bench/deferral.py`` (issue 18's learned deferral score), on synthetic
data: routing by priority, the paired bootstrap, the dev threshold and a head that must find
where the LLM helps (the features, the folds and the benefit target are the library's:
``tests/core/test_deferral_dev.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import deferral as d
from datashunt.training.guarantees.deferral import confidence_features


def test_routed_correct_sends_the_top_k_by_priority() -> None:
    small = np.array([True, False, True, False])
    llm = np.array([False, True, True, True])
    pr = np.array([0.1, 0.9, 0.5, 0.8])
    # 50 %: inputs 1 and 3 go to the LLM (both right there), 0 and 2 stay (0 right, 2 right)
    assert d.routed_correct(pr, small, llm, 0.5).tolist() == [True, True, True, True]
    assert d.routed_correct(pr, small, llm, 0.0).tolist() == small.tolist()
    assert d.routed_correct(pr, small, llm, 1.0).tolist() == llm.tolist()
    # 25 % of 4 = 1 input: the highest priority only
    assert d.routed_correct(pr, small, llm, 0.25).tolist() == [True, True, True, False]


def test_paired_bootstrap() -> None:
    z = d.paired_bootstrap(np.zeros(100))
    assert z == {"mean": 0.0, "se": 0.0, "lo": 0.0, "hi": 0.0}
    b = d.paired_bootstrap(np.array([1.0] * 30 + [0.0] * 70), n_boot=4000)
    assert b["mean"] == pytest.approx(0.3)
    assert b["se"] == pytest.approx(np.sqrt(0.3 * 0.7 / 100), rel=0.15)
    assert b["lo"] < 0.3 < b["hi"]


def test_routed_at_dev_delta_keeps_the_dev_share() -> None:
    dev = np.arange(100, dtype=float)
    small, llm = np.zeros(100, bool), np.ones(100, bool)
    c, routed, thr = d.routed_at_dev_delta(dev, dev[::-1].copy(), small, llm, 0.3)
    assert thr == 69.0 and routed.sum() == 30 and c.sum() == 30
    assert routed[:30].all()  # the 30 highest priorities (reversed order)
    # a test set that scores higher throughout sends more than the dev share: δ is dev's
    assert d.routed_at_dev_delta(dev, dev + 0.5, small, llm, 0.3)[1].sum() == 31
    assert d.routed_at_dev_delta(dev, dev, small, llm, 1.0)[1].all()


@pytest.mark.parametrize("kind", ["class-llm", "lr-gain", "lr-two", "lr-win"])
def test_a_head_finds_where_the_llm_helps(kind: str) -> None:
    # the gate's confidence says nothing; the LLM helps exactly where feature 0 is positive
    rng = np.random.default_rng(0)
    n = 600
    probs = rng.dirichlet([1, 1, 1], size=n)
    pred = probs.argmax(axis=1)
    small = rng.random(n) < 0.6
    helps = pred == 0 if kind == "class-llm" else rng.random(n) < 0.5
    llm = np.where(helps, True, small & (rng.random(n) < 0.3))
    x = np.concatenate([confidence_features(probs), helps[:, None] * 2.0 - 1.0], axis=1)
    head = d.Head(kind, c=1.0).fit(x[:400], small[:400], llm[:400], probs[:400])
    pr = head.priority(x[400:], probs[400:])
    by_head = d.routed_correct(pr, small[400:], llm[400:], 0.3).mean()
    by_max = d.routed_correct(-probs[400:].max(axis=1), small[400:], llm[400:], 0.3).mean()
    assert by_head > by_max + 0.05
