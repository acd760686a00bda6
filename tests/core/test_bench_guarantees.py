"""The guarantee benchmark's own arithmetic: the "expected on a test half" figure, the call
rate of the conformal shunt, and the report tables."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.guarantees import _breaks, _expected_break
from bench.guarantees_llm import _llm_share
from bench.guarantees_report import markdown
from datashunt.prompts import conformal_candidates
from datashunt.training import Budget, PrecisionFloor


def test_expected_break_of_a_budget_is_the_binomial_tail() -> None:
    conf = np.r_[np.full(285, 0.5), np.full(715, 0.95)]  # LLM share 28.5 % at δ = 0.9
    p = _expected_break(Budget(0.3), 0.3, conf, np.ones(1000), 0.9, 1000)
    assert p == pytest.approx(stats.binom.sf(300, 1000, 0.285))


def test_expected_break_of_a_floor_matches_a_simulation() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 4000)
    ok = (rng.random(4000) < 0.93).astype(float)
    target, d, m = PrecisionFloor(0.9), 0.8, 300
    exact = _expected_break(target, 0.9, conf, ok, d, m)
    draws = [rng.integers(0, 4000, m) for _ in range(4000)]
    simulated = np.mean([_breaks(target, 0.9, conf[i], ok[i], d) for i in draws])
    assert 0.02 < exact < 0.5 and simulated == pytest.approx(exact, abs=0.025)


def test_conformal_shunt_answers_singletons_with_the_gate() -> None:
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.85, 0.15]])
    assert _llm_share(probs, 0.9, None) == pytest.approx(2 / 3)
    assert _llm_share(probs, 0.9, 0.3) == 0.0  # no set of two labels: the gate answers all
    assert _llm_share(probs, 0.9, 0.7) == pytest.approx(1 / 3)  # only [0.6, 0.4] holds two
    # the same rule as the engine's conformal sets
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), 500)
    labels = ("a", "b", "c", "d")
    sizes = np.array(
        [len(conformal_candidates(dict(zip(labels, r, strict=True)), labels, 0.6)) for r in p]
    )
    routed = (p.max(1) < 0.9) & (sizes > 1)
    assert _llm_share(p, 0.9, 0.6) == pytest.approx(routed.mean())


def test_report_renders_every_table() -> None:
    cert = {
        "violation_rate_population": 0.01,
        "violation_rate_expected_test_half": 0.04,
        "violation_rate_certified": 0.05,
        "violation_rate_uncertified": 0.5,
        "llm_share_certified": 0.27,
        "llm_share_uncertified": 0.3,
        "splits_all_to_llm": 0,
    }
    stream = {"streams": 20, "false_alarm_rate": 0.0, "detected": 19, "detected_within_500": 18}
    side = {
        "gate_accuracy": 0.8,
        "mean_confidence": 0.79,
        "small_share_at_delta": 0.3,
        "small_route_accuracy": 0.95,
    }
    res = {
        "certified": {"sst2": {"budget:0.3": cert}},
        "conformal": {},
        "drift": {"delta": 0.9, "a -> b": {"default": stream}, "shift a -> b": {"before": side}},
    }
    text = markdown(res)
    assert "| sst2 | budget:0.3 | 1.0 % | 5.0 % | 4.0 % | 50.0 % |" in text
    assert "| a -> b | default | 0.0 % | 19 | 18 |" in text
    assert "| a -> b | before | 80.0 % | 0.790 | 30.0 % | 95.0 % |" in text
