"""The deferral score learned on dev (``datashunt.training.guarantees.deferral``, the bench's
``deferral-dev``): its features, folds and head, and that it is chosen over the maximum
probability exactly where the LLM's correctness depends on something the confidence does not
see (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datashunt.benchmark.ranking import DEV_DEFERRAL
from datashunt.benchmark.recorded import RecordedConfig, bench_recorded
from datashunt.cli import main
from datashunt.data import Dataset, Example
from datashunt.errors import ConfigError
from datashunt.llm import ColumnReplayLLM
from datashunt.training.guarantees.deferral import (
    BenefitHead,
    confidence_features,
    cross_fitted_scores,
    deferral_features,
    dev_deferral,
    gain,
    member_features,
    stratified_folds,
)
from datashunt.training.guarantees.ranking import SCORES, choose_score
from tests.conftest import KeywordGate


def test_gain_is_the_llm_benefit() -> None:
    small = np.array([True, True, False, False])
    llm = np.array([True, False, True, False])
    assert gain(small, llm).tolist() == [0, -1, 1, 0]


def test_confidence_and_member_features() -> None:
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]])
    x = confidence_features(p)
    k = 3
    assert x.shape == (2, k + 2 + k)
    np.testing.assert_allclose(x[:, :k], [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    np.testing.assert_allclose(x[:, k], [0.5, 0.2])  # margin
    assert x[0, k + 2 + 1] == 1.0 and x[1, k + 2 + 0] == 1.0  # predicted class one-hot
    other = np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    m = member_features(p, [other])
    assert m.shape == (2, k + 2)
    np.testing.assert_allclose(m[:, k], [0.8, 0.1])  # the other gate's p(base label)
    assert m[:, k + 1].tolist() == [1.0, 0.0]  # agreement
    assert member_features(p, []).shape == (2, 0)
    full = deferral_features(p, [other], [3, 10])
    assert full.shape == (2, (2 * k + 2) + (k + 2) + 1)
    np.testing.assert_allclose(full[:, -1], np.log1p([3, 10]))


def test_folds_partition_and_stratify() -> None:
    strata = np.array([0] * 50 + [1] * 10)
    fs = stratified_folds(strata, 5, seed=3)
    assert sorted(np.concatenate(fs).tolist()) == list(range(60))
    assert all((strata[f] == 1).sum() == 2 for f in fs)
    assert [f.tolist() for f in fs] == [f.tolist() for f in stratified_folds(strata, 5, seed=3)]


def test_head_matches_scikit_learns_logistic_regression() -> None:
    sk = pytest.importorskip("sklearn.linear_model")
    pre = pytest.importorskip("sklearn.preprocessing")
    pipe = pytest.importorskip("sklearn.pipeline")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6))
    small = rng.random(400) < 0.6
    llm = np.where(x[:, 0] > 0, rng.random(400) < 0.9, rng.random(400) < 0.4)
    ours = BenefitHead(c=0.1).fit(x, small, llm).score(x)
    ref = pipe.make_pipeline(pre.StandardScaler(), sk.LogisticRegression(C=0.1, max_iter=2000))
    p = ref.fit(x, gain(small, llm)).predict_proba(x)
    np.testing.assert_allclose(ours, p[:, 0] - p[:, 2], atol=2e-3)


def _synthetic(
    n: int, seed: int, llm_sees_length: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four labels; the gate is right exactly where its maximum probability exceeds 0.45 (so
    the maximum ranks the gate's errors perfectly). The LLM is right on long inputs and wrong
    on short ones (``llm_sees_length``), or right on 70 % at random, whatever the input."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.7] * 4, size=n)
    small = probs.max(axis=1) > 0.45
    words = rng.integers(3, 40, size=n)
    llm = words > 20 if llm_sees_length else rng.random(n) < 0.7
    return probs, small, llm, words


def _choose(
    probs: np.ndarray, small: np.ndarray, llm: np.ndarray, words: np.ndarray
) -> tuple[str, dict[str, dict[str, float]]]:
    scores = {k: f(probs) for k, f in SCORES.items()}
    x = deferral_features(probs, [], words)
    scores[DEV_DEFERRAL] = cross_fitted_scores(x, small, llm, k=5, seed=0)
    return choose_score(scores, small, llm, (0.2, 0.3, 0.4, 0.5))


def test_cross_fitted_score_beats_max_where_the_llm_depends_on_what_confidence_misses() -> None:
    chosen, table = _choose(*_synthetic(1200, 0, llm_sees_length=True))
    assert chosen == DEV_DEFERRAL
    assert table[DEV_DEFERRAL]["mean_accuracy"] > table["max"]["mean_accuracy"] + 0.03


def test_choose_score_keeps_max_where_the_llm_is_right_at_random() -> None:
    chosen, table = _choose(*_synthetic(1200, 1, llm_sees_length=False))
    assert chosen == "max"
    assert table[DEV_DEFERRAL]["mean_accuracy"] <= table["max"]["mean_accuracy"]


def test_dev_deferral_refits_on_all_of_dev() -> None:
    probs, small, llm, words = _synthetic(300, 2, llm_sees_length=True)
    x = deferral_features(probs, [], words)
    dd = dev_deferral(x[:200], small[:200], llm[:200], x[200:], probs[:200].argmax(axis=1))
    assert dd.cross_fitted.shape == dd.refit_dev.shape == (200,) and dd.test.shape == (100,)
    np.testing.assert_allclose(
        dd.test, BenefitHead().fit(x[:200], small[:200], llm[:200]).score(x[200:])
    )
    with pytest.raises(ConfigError, match="differ"):
        BenefitHead().fit(x, small, small)


def _texts(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        kw = {"positive": "good", "negative": "bad"}[label]
        filler = " so" * int(rng.integers(0, 14))  # 2 to 16 words in all
        # a third carry no keyword: the gate is unsure (and right on half of them)
        text = f"item {seed}-{i}{filler}" if i % 3 == 0 else f"{kw} item {seed}-{i}{filler}"
        ex.append(Example(text, label))
    return Dataset(tuple(ex), ("negative", "positive"))


def test_bench_recorded_chooses_deferral_dev_and_routes_by_its_refit() -> None:
    # the LLM is right on long inputs only: no confidence can see it, the word count can
    dev, test = _texts(300, 1), _texts(200, 2)
    answers = {
        e.text: (
            e.label if len(e.text.split()) > 8 else ("positive", "negative")[e.label == "positive"]
        )
        for d in (dev, test)
        for e in d.examples
    }
    llms = {"ans": ColumnReplayLLM(answers, model="rec")}
    config = RecordedConfig(budgets=(0.15, 0.2))
    res = bench_recorded(
        "toy", KeywordGate(), llms, dev, test, config=config, deferral_dev=True, progress=False
    )
    score = res["score"]
    assert score["chosen"] == DEV_DEFERRAL
    assert score["deferral"]["dev"]["members"] == 0 and score["deferral"]["dev"]["folds"] == 5
    assert score["dev"][DEV_DEFERRAL]["mean_accuracy"] > score["dev"]["max"]["mean_accuracy"]
    m = res["methods"]
    for tag in ("b15", "b20"):
        assert m[f"ds-{tag}"]["accuracy"] > m["small"]["accuracy"] + 0.05
        assert m[f"ds-{tag}"]["llm_rate"] <= int(tag[1:]) / 100 + 0.05


def test_cli_deferral_reads_every_given_gate(tmp_path: Path, tiny_bert: Path) -> None:
    from tests.core.test_recorded import _csv

    data = _csv(tmp_path / "mine.csv")
    out = tmp_path / "rec.json"
    args = ["bench", "--data", str(data), "--split-col", "split", "--llm-column", "my_llm"]
    args += ["--gate", f"{tiny_bert}+{tiny_bert}", "--deferral", "--out", str(out)]
    assert main([*args, "--no-plot", "--no-progress"]) == 0
    score = json.loads(out.read_text(encoding="utf-8"))["datasets"]["mine.csv"]["score"]
    assert score["deferral"]["dev"]["members"] == 2  # the first gate alone was kept
    assert DEV_DEFERRAL in score["dev"] and score["chosen"] in score["dev"]
