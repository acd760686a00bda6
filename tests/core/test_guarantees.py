"""Issue 13: certified δ, conformal label sets, audits, the drift alarm, receipts, monitor."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from datashunt import (
    Budget,
    CallStore,
    DriftMonitor,
    DriftWarning,
    MaxAccuracy,
    PrecisionFloor,
    Shunt,
    ShuntPolicy,
    ShuntResult,
    calibrate,
)
from datashunt.cli import main
from datashunt.data import Dataset, Example
from datashunt.engine.watch import REFERENCE_KEY
from datashunt.errors import ConfigError, DataError
from datashunt.training import ConformalSets, Guarantee, certify_threshold, fit_conformal
from datashunt.training.guarantees.certify import (
    STARTS,
    THRESHOLD_GRID,
    budget_examples_needed,
    clopper_pearson_lower,
    clopper_pearson_upper,
    examples_needed,
    precision_pvalue,
    share_pvalue,
)
from datashunt.training.guarantees.conformal import conformal_set
from tests.conftest import ArrayGate, FakeLLM, KeywordGate

LABELS = ("negative", "positive")


def _binom_cdf(k: int, n: int, p: float) -> float:  # independent of scipy: the sum of the pmf
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


# ---- bounds against values computed independently ---------------------------------------


@pytest.mark.parametrize(("errors", "n", "floor"), [(0, 100, 0.97), (3, 200, 0.95), (10, 50, 0.9)])
def test_precision_pvalue_is_the_binomial_tail(errors: int, n: int, floor: float) -> None:
    assert precision_pvalue(errors, n, floor) == pytest.approx(_binom_cdf(errors, n, 1 - floor))
    assert precision_pvalue(0, 0, floor) == 1.0


def test_share_pvalue_and_rule_of_three() -> None:
    assert share_pvalue(20, 100, 0.3) == pytest.approx(_binom_cdf(20, 100, 0.3))
    # 0 errors in 99 inputs certifies 97% at 95% (0.97^99 = 0.049), 98 do not (0.0505)
    assert precision_pvalue(0, 99, 0.97) < 0.05 < precision_pvalue(0, 98, 0.97)


@pytest.mark.parametrize(("k", "n"), [(95, 100), (0, 30), (480, 500)])
def test_clopper_pearson_bounds_invert_the_binomial(k: int, n: int) -> None:
    lo, hi = clopper_pearson_lower(k, n, 0.95), clopper_pearson_upper(k, n, 0.95)
    if k > 0:  # at the lower bound, seeing k or more successes has probability 0.05
        assert 1 - stats.binom.cdf(k - 1, n, lo) == pytest.approx(0.05, rel=1e-6)
    else:
        assert lo == 0.0
    assert stats.binom.cdf(k, n, hi) == pytest.approx(0.05, rel=1e-6)
    assert lo < k / n < hi or k == 0


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.5, 1.0, n)
    correct = (rng.uniform(size=n) < conf).astype(float)  # calibrated: P(right | c) = c
    return conf, correct


def test_certified_precision_meets_its_test_and_stores_the_guarantee() -> None:
    conf, ok = _synthetic(2000, 0)
    c = certify_threshold(conf, ok, PrecisionFloor(0.9), 0.95)
    above = conf >= c.threshold
    errors, m = int(above.sum() - ok[above].sum()), int(above.sum())
    assert precision_pvalue(errors, m, 0.9) <= 0.05
    assert c.guarantee.bound == pytest.approx(clopper_pearson_lower(m - errors, m, 0.95))
    assert c.threshold in THRESHOLD_GRID and 0.8 <= c.threshold < 0.9  # true floor: 0.8
    assert Guarantee.from_json(json.loads(json.dumps(c.guarantee.to_json()))) == c.guarantee


def test_certified_precision_holds_over_many_calibration_samples() -> None:
    # On fresh data from the same distribution, the small route falls below the floor in
    # at most 5% of calibration draws (true accuracy above δ: (1 + δ) / 2 here).
    broken = 0
    for seed in range(100):
        conf, ok = _synthetic(500, seed)
        d = certify_threshold(conf, ok, PrecisionFloor(0.9), 0.95).threshold
        true_acc = (1 + d) / 2 if d < 1 else 1.0
        broken += true_acc < 0.9
    assert broken <= 8  # 5% of 100, with binomial slack


def test_certified_budget_and_accuracy_targets() -> None:
    conf, ok = _synthetic(1000, 1)
    c = certify_threshold(conf, ok, Budget(0.3), 0.95)
    k = int((conf < c.threshold).sum())
    assert share_pvalue(k, 1000, 0.3) <= 0.05 and c.llm_rate < 0.3
    assert c.guarantee.bound == pytest.approx(clopper_pearson_upper(k, 1000, 0.95))
    acc = certify_threshold(conf, ok, MaxAccuracy(llm_accuracy=0.85), 0.95)
    assert acc.guarantee.kind == "precision" and acc.guarantee.level == 0.85


def test_uncertifiable_floor_sends_everything_to_the_llm() -> None:
    conf, ok = _synthetic(50, 2)
    c = certify_threshold(conf, ok, PrecisionFloor(0.99), 0.95)
    assert c.threshold == 1.0 and "cannot be certified" in c.note
    with pytest.raises(ConfigError, match="confidence"):
        certify_threshold(conf, ok, PrecisionFloor(0.9), 1.5)


def test_examples_needed_is_the_smallest_sample_that_certifies() -> None:
    n = examples_needed(0.5, 0.99, 0.97, 0.95)
    assert n is not None
    m = round(0.5 * n)
    assert precision_pvalue(round(0.01 * m), m, 0.97) <= 0.05 / len(STARTS)
    assert examples_needed(0.5, 0.96, 0.97, 0.95) is None


# ---- calibrate and the CLI ---------------------------------------------------------------


def _dev(n: int = 400) -> Dataset:
    rng = np.random.default_rng(3)
    ex = []
    for i in range(n):
        lab = LABELS[i % 2]
        word = {"negative": "bad", "positive": "good"}[lab] if rng.uniform() < 0.8 else "meh"
        ex.append(Example(f"{word} {i}", lab))
    return Dataset(tuple(ex), LABELS)


@pytest.mark.parametrize(
    ("share", "rate", "confidence"), [(0.2, 0.3, 0.95), (0.25, 0.3, 0.95), (0.1, 0.2, 0.99)]
)
def test_budget_examples_needed_is_the_smallest_sample_that_certifies(
    share: float, rate: float, confidence: float
) -> None:
    need = budget_examples_needed(share, rate, confidence)
    # independently: scan n upward with scipy's binomial, the budget test at each n
    n = 1
    while stats.binom.cdf(round(share * n), n, rate) > 1 - confidence:
        n += 1
    assert need == n
    assert budget_examples_needed(rate, rate, confidence) is None


def test_certified_budget_says_what_a_tighter_guarantee_needs() -> None:
    rng = np.random.default_rng(0)
    conf = rng.beta(5, 1, 1000)
    c = certify_threshold(conf, np.ones(1000), Budget(0.3), 0.95)
    share = c.llm_rate
    tighter = 0.3 - (0.3 - share) / 2
    need = budget_examples_needed(tighter, 0.3, 0.95)
    assert need is not None and need > 1000  # halving the cost takes about 4x the sample
    assert f"certify an LLM share of {tighter:.1%}" in c.note and f"{need} at 95%" in c.note


def test_calibrate_with_confidence_stores_the_guarantee() -> None:
    plain = calibrate(KeywordGate(), _dev(), Budget(0.5))
    assert plain.policy.guarantee is None and plain.certified is None
    rep = calibrate(KeywordGate(), _dev(), Budget(0.5), confidence=0.95)
    g = rep.policy.guarantee
    assert g is not None and g["kind"] == "budget" and g["confidence"] == 0.95
    assert rep.policy.metrics["llm_rate"] <= 0.5
    text = rep.format()
    assert "certified: LLM share <= 50.0%" in text and "upper bound" in text
    assert len(rep.policy.metrics[REFERENCE_KEY]) == 200
    again = ShuntPolicy.from_dict(json.loads(json.dumps(rep.policy.to_dict())))
    assert again.guarantee == g and again.version == rep.policy.version


def test_cli_calibrate_confidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import datashunt.gates

    monkeypatch.setattr(datashunt.gates, "load_gate", lambda path: KeywordGate())
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    rows = ["split,text,label"] + [f"dev,{e.text},{e.label}" for e in _dev(400).examples]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(rows) + "\n")
    args = ["calibrate", "--gate", str(gate_dir), "--data", str(data), "--split-col", "split"]
    assert main([*args, "--target", "precision:0.97", "--confidence", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "certified: small-route accuracy >= 97.0%" in out and "lower bound" in out
    assert "calibration examples to certify the uncertified δ" in out
    policy = ShuntPolicy.load(gate_dir)
    assert policy.guarantee is not None and policy.guarantee["level"] == 0.97
    assert main([*args, "--target", "budget:0.3", "--coverage", "0.9", "--dry-run"]) == 0
    assert main([*args, "--target", "budget:0.3", "--confidence", "0.95", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "note: calibration examples for a tighter guarantee" in out and "(now 400)" in out
    assert main([*args, "--target", "budget:0.3", "--confidence", "2"]) == 2
    assert "confidence must be in (0, 1)" in capsys.readouterr().err


# ---- conformal sets ----------------------------------------------------------------------


def test_conformal_quantile_and_coverage() -> None:
    rng = np.random.default_rng(4)
    k, n = 4, 3000
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in probs])  # calibrated by construction
    rule = fit_conformal(probs[:1000], y[:1000], 0.1)
    scores = np.sort(1 - probs[np.arange(1000), y[:1000]])
    assert rule.qhat == scores[math.ceil(1001 * 0.9) - 1]
    labels = ("a", "b", "c", "d")
    sets = [conformal_set(dict(zip(labels, p, strict=True)), rule, labels) for p in probs[1000:]]
    covered = np.mean([labels[t] in s for t, s in zip(y[1000:], sets, strict=True)])
    assert 0.88 <= covered <= 0.93 and all(sets)
    assert ConformalSets.from_json(rule.to_json()) == rule
    with pytest.raises(DataError, match="calibration examples"):
        fit_conformal(probs[:5], y[:5], 0.1)


def test_conformal_pruning_in_the_shunt() -> None:
    rows = [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]
    labels = ("a", "b", "c")
    policy = ShuntPolicy(
        labels=labels, threshold=0.9, conformal={"alpha": 0.1, "qhat": 0.7, "n": 100}
    )
    llm = FakeLLM("b")
    shunt = Shunt(ArrayGate(labels, rows), policy, llm=llm, prompt_mode="hard")
    one, two = shunt.run_batch(["x", "y"])
    assert isinstance(one, ShuntResult) and isinstance(two, ShuntResult)
    assert (
        one.route == "small" and one.label == "a" and "conformal label set" in one.decision.reason
    )
    assert two.route == "llm" and llm.requests[0].candidates == ("a", "b")
    assert "c" not in llm.requests[0].prompt.split("Text:")[0]


# ---- audits, receipts, drift, monitor ----------------------------------------------------


def test_audits_receipts_and_monitor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datashunt import LLMReply

    url = tmp_path / "calls.sqlite"
    llm = FakeLLM(lambda r: LLMReply("negative", prompt_tokens=100, completion_tokens=2, model="m"))
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, guarantee={"kind": "budget"})
    shunt = Shunt(
        KeywordGate(), policy, llm=llm, store=url, audit_rate=1.0, audit_seed=0,
        prices={"m": (1.0, 2.0)},
    )  # fmt: skip
    res = shunt.run_batch(["good good", "no idea"])
    small, asked = res
    assert isinstance(small, ShuntResult) and isinstance(asked, ShuntResult)
    assert small.label == "positive" and small.extra["audit"]["label"] == "negative"
    assert small.receipt is not None and small.receipt.audited
    assert small.receipt.p_wrong == pytest.approx(1 - small.decision.confidence)
    assert asked.receipt is not None and asked.receipt.cost == pytest.approx(104e-6)
    assert asked.receipt.policy_version == policy.version and asked.receipt.guarantee
    audit_prompt = next(r for r in llm.requests if r.audit).prompt
    assert "smaller model" not in audit_prompt  # an audit must not lean on the gate's answer
    records = list(CallStore(url, read_only=True).iter())
    assert sum(bool((r.extra or {}).get("audit")) for r in records) == 1
    assert main(["monitor", "--store", str(url), "--price", "m=1,2"]) == 0
    out = capsys.readouterr().out
    assert "inputs 2, LLM share 50.0%" in out and "agrees with the LLM 0.0%" in out
    assert main(["monitor", "--store", str(url), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["audits"] == 1 and total["prompt_tokens"] == 200
    assert main(["monitor", "--store", str(tmp_path / "missing.sqlite")]) == 2


def test_audit_rate_is_validated_and_zero_by_default(keyword_gate: KeywordGate) -> None:
    with pytest.raises(ConfigError, match="audit_rate"):
        Shunt(keyword_gate, audit_rate=1.5)
    llm = FakeLLM()
    Shunt(keyword_gate, llm=llm).run_batch(["good good"])
    assert llm.requests == []


def test_drift_alarm_fires_on_a_shift_and_not_on_the_same_distribution() -> None:
    rng = np.random.default_rng(5)
    ref = rng.beta(8, 1, 1000)
    quiet = DriftMonitor(ref, warn=False)
    assert quiet.observe(rng.beta(8, 1, 3000)) is None
    loud = DriftMonitor(ref)
    with pytest.warns(DriftWarning, match="re-calibrate"):
        alarm = loud.observe(np.concatenate([rng.beta(8, 1, 300), rng.beta(3, 1, 500)]))
    assert alarm is not None and 300 < alarm.at <= 800
    assert sum(loud.level(j) for j in range(1, 10_000)) < 0.05


def test_shunt_drift_from_the_policy_marks_receipts() -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.99] * 200})
    shunt = Shunt(KeywordGate(), policy, drift=True, llm=FakeLLM("negative"))
    seen = []
    shunt.watch.listeners.append(seen.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DriftWarning)
        results = shunt.run_batch([f"meh {i}" for i in range(450)])
    assert seen and isinstance(results[-1], ShuntResult)
    assert results[-1].receipt is not None and results[-1].receipt.drift
    with pytest.raises(ConfigError, match="calibration confidences"):
        Shunt(KeywordGate(), ShuntPolicy(labels=LABELS), drift=True)


def test_monitor_replays_the_drift_alarm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = tmp_path / "calls.sqlite"
    policy = ShuntPolicy(labels=LABELS, threshold=0.9, metrics={REFERENCE_KEY: [0.99] * 200})
    policy.save(tmp_path / "policy.json")
    shunt = Shunt(KeywordGate(), policy, store=url, llm=FakeLLM("negative"))
    shunt.run_batch([f"good {i}" for i in range(100)] + [f"meh {i}" for i in range(400)])
    assert main(["monitor", "--store", str(url), "--policy", str(tmp_path / "policy.json")]) == 0
    assert "drift: ALARM" in capsys.readouterr().out
    assert main(["monitor", "--store", str(url), "--price", "bad"]) == 2
