"""The drift alarm's tests (issue 13): KS with a quantile reference, the LLM-share and audit
tests, the error-spending rule, the representation test, and audits reaching the alarm."""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest
from scipy import stats

from datashunt import DriftMonitor, DriftWarning, Shunt, ShuntPolicy, ShuntResult
from datashunt.engine.drift import ks_pvalue
from datashunt.engine.representation import EmbeddingDrift
from datashunt.engine.watch import REFERENCE_KEY, reference_confidences
from datashunt.errors import ConfigError
from datashunt.types import LLMRequest
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")


def test_ks_matches_scipy_and_quantiles_keep_the_sample_size() -> None:
    rng = np.random.default_rng(0)
    ref, live = np.sort(rng.beta(8, 1, 600)), rng.beta(6, 1, 400)
    d, p = ks_pvalue(live, ref, ref.size)
    res = stats.ks_2samp(live, ref, method="asymp")
    assert d == pytest.approx(res.statistic) and p == pytest.approx(res.pvalue)
    # 200 quantiles of the 600 stand in for them: nearly the same distance, the same n
    q = np.asarray(reference_confidences(ref))
    d_q, p_q = ks_pvalue(live, q, 600)
    assert abs(d_q - d) < 0.01 and p_q == pytest.approx(p, rel=0.5)
    assert ks_pvalue(live, q, 200)[1] > p_q  # the quantiles' own count would throw power away


def test_levels_spend_alpha_across_the_three_tests() -> None:
    mon = DriftMonitor([0.9] * 50, alpha=0.05, audit_alpha=0.4)
    total = sum(
        mon.level(j, t) for t in ("confidence", "llm_share", "audit") for j in range(1, 10**5)
    )
    assert 0.0499 < total <= 0.05
    assert sum(mon.level(j, "audit") for j in range(1, 10**5)) == pytest.approx(0.02, rel=1e-3)
    with pytest.raises(ConfigError, match="audit_reference"):
        DriftMonitor([0.9] * 50, audit_reference=(5, 3))


def test_false_alarms_stay_under_alpha_on_exchangeable_streams() -> None:
    rng = np.random.default_rng(1)
    ref = rng.beta(5, 1, 1000)
    fired = 0
    for _ in range(60):
        mon = DriftMonitor(ref, warn=False, audit_reference=(10, 200))
        fired += mon.observe(rng.beta(5, 1, 2000)) is not None
        fired += mon.observe_audits(rng.random(600) > 0.05) is not None
    assert fired <= 6  # at most 5 % expected (binomial 60, 0.05: P(> 6) < 0.05)


def test_llm_share_test_sees_a_shift_at_the_threshold() -> None:
    rng = np.random.default_rng(2)
    ref = np.r_[rng.uniform(0.5, 0.9, 700), rng.uniform(0.9, 1.0, 300)]
    # the same shape above and below δ, only the share above δ halves
    live = np.r_[rng.uniform(0.5, 0.9, 850), rng.uniform(0.9, 1.0, 150)][rng.permutation(1000)]
    alarm = DriftMonitor(ref, threshold=0.9, warn=False).observe(live)
    assert alarm is not None and alarm.test in ("confidence", "llm_share")
    assert alarm.live_llm_share > alarm.calibration_llm_share


def test_audit_test_fires_on_falling_agreement_with_a_reference_or_a_burn_in() -> None:
    rng = np.random.default_rng(3)
    for reference in ((10, 200), None):
        mon = DriftMonitor([0.95] * 100, audit_reference=reference, audit_burn_in=200)
        before, after = rng.random(300) > 0.05, rng.random(400) > 0.25
        assert mon.observe_audits(before) is None
        with pytest.warns(DriftWarning, match="audits: the LLM agrees"):
            alarm = mon.observe_audits(after)
        assert alarm is not None and alarm.test == "audit"
        assert alarm.live_agreement is not None and alarm.live_agreement < 0.85
        assert mon.audit_reference is not None
    off = DriftMonitor([0.95] * 100, audit_reference=(0, 100), audit_alpha=0.0)
    assert off.observe_audits([False] * 500) is None


def _disagreeing_llm(req: LLMRequest) -> str:  # right on early inputs, wrong on late ones
    return "negative" if req.text.startswith("late") else "positive"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_shunt_audits_reach_the_drift_alarm(asynchronous: bool) -> None:
    # the gate is just as sure on "late" inputs: only the audits can see it is now wrong
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.982] * 200})
    monitor = DriftMonitor(policy.metrics[REFERENCE_KEY], audit_reference=(2, 200))
    shunt = Shunt(
        KeywordGate(),
        policy,
        drift=monitor,
        audit_rate=1.0,
        audit_seed=0,
        llm=FakeLLM(_disagreeing_llm),
    )
    seen = []
    shunt.watch.listeners.append(seen.append)
    texts = [f"early good {i}" for i in range(100)] + [f"late good {i}" for i in range(100)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        for start in range(0, 200, 50):
            batch = texts[start : start + 50]
            if asynchronous:
                asyncio.run(shunt.arun_batch(batch))
            else:
                shunt.run_batch(batch)
    assert len(seen) == 1 and seen[0].test == "audit" and seen[0].at > 100
    assert shunt.watch.drifted and monitor.audits_seen == 200


def test_fallback_audits_do_not_count_as_agreement() -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.982] * 200})
    monitor = DriftMonitor(policy.metrics[REFERENCE_KEY], audit_reference=(2, 200))
    shunt = Shunt(KeywordGate(), policy, drift=monitor, audit_rate=1.0, llm=FakeLLM("no idea"))
    results = shunt.run_batch([f"good {i}" for i in range(30)])
    assert all(isinstance(r, ShuntResult) and r.extra["audit"]["source"] != "llm" for r in results)
    assert monitor.audits_seen == 0


def test_representation_test_sees_a_shift_the_confidences_cannot() -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(800, 32))
    same = EmbeddingDrift(ref, components=8, warn=False)
    assert same.observe(rng.normal(size=(1500, 32))) is None
    shifted = rng.normal(size=(600, 32))
    shifted[:, :4] += 0.3  # a small move of the mean along the main directions
    mon = EmbeddingDrift(ref, components=8)
    with pytest.warns(DriftWarning, match="inputs drifted"):
        alarm = mon.observe(np.r_[rng.normal(size=(300, 32)), shifted])
    assert alarm is not None and alarm.test == "representation" and alarm.at > 300
    with pytest.raises(ConfigError, match="components"):
        EmbeddingDrift(ref[:5], components=8)
