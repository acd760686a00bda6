from __future__ import annotations

import numpy as np
import pytest

from datashunt import (
    Budget,
    ConfigError,
    DataError,
    LLMError,
    LLMRequest,
    MaxAccuracy,
    PrecisionFloor,
    RetryPolicy,
    calibrate,
)
from datashunt.data import Dataset, Example
from datashunt.gates import softmax
from datashunt.training import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    measure_llm,
    measure_llm_sample,
    negative_log_likelihood,
    parse_target,
)
from tests.conftest import KeywordGate


def _overconfident(
    n: int = 4000, true_t: float = 2.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose calibrated temperature is true_t: labels sampled from softmax(z / true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, size=(n, 3))
    p = softmax(z, true_t)
    y = np.array([rng.choice(3, p=row) for row in p])
    return z, y


def test_fit_temperature_recovers_truth_and_improves_calibration() -> None:
    z, y = _overconfident()
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.12)
    assert negative_log_likelihood(softmax(z, t), y) < negative_log_likelihood(softmax(z, 1.0), y)
    assert expected_calibration_error(softmax(z, t), y) < expected_calibration_error(softmax(z), y)


CONF = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.51, 0.97, 0.85])
CORRECT = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0], dtype=float)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.3, 0.5, 1.0])
def test_budget_never_exceeds_rate_and_uses_it(rate: float) -> None:
    delta, _ = choose_threshold(CONF, CORRECT, Budget(rate))
    llm_rate = float((delta > CONF).mean())
    assert llm_rate <= rate + 1e-9
    # one more input to the LLM would break the budget
    assert llm_rate + 1 / len(CONF) > rate


def test_precision_floor_is_met_with_fewest_llm_calls() -> None:
    delta, note = choose_threshold(CONF, CORRECT, PrecisionFloor(1.0))
    small = delta <= CONF
    assert note == "" and CORRECT[small].mean() == 1.0
    assert delta == pytest.approx(0.9)  # 0.85 would let a wrong answer through


def test_precision_floor_unreachable() -> None:
    delta, note = choose_threshold(np.array([0.9, 0.8]), np.array([0.0, 0.0]), PrecisionFloor(0.9))
    assert delta == 1.0 and "not reachable" in note


def test_max_accuracy_scalar_and_per_example() -> None:
    # A perfect LLM: everything below 0.9 goes to it (all above 0.9 is right anyway, and on a
    # tie in expected accuracy the fewer LLM calls win).
    good_llm, _ = choose_threshold(CONF, CORRECT, MaxAccuracy(llm_accuracy=1.0))
    assert good_llm == pytest.approx(0.9)
    bad_llm, _ = choose_threshold(CONF, CORRECT, MaxAccuracy(llm_accuracy=0.0))
    assert (bad_llm <= CONF).all()  # a useless LLM should get nothing
    # Measured LLM: right on the two lowest-confidence inputs (0.55, 0.51), wrong on the
    # middle ones (0.85 .. 0.6): only the two lowest are worth sending.
    llm_correct = np.full(len(CONF), np.nan)
    llm_correct[[6, 7]] = 1.0
    llm_correct[[3, 4, 5, 9]] = 0.0
    d, _ = choose_threshold(CONF, CORRECT, MaxAccuracy(llm_correct=llm_correct))
    assert 0.55 < d <= 0.6


def test_max_accuracy_needs_one_source() -> None:
    with pytest.raises(ConfigError):
        MaxAccuracy()
    with pytest.raises(ConfigError):
        choose_threshold(CONF, CORRECT, MaxAccuracy(llm_correct=[float("nan")] * len(CONF)))


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("budget:0.3", Budget), ("precision:0.97", PrecisionFloor), ("accuracy:0.9", MaxAccuracy)],
)
def test_parse_target(spec: str, kind: type) -> None:
    assert isinstance(parse_target(spec), kind)


@pytest.mark.parametrize("spec", ["budget:x", "nope:1", "accuracy", "budget:1.5"])
def test_parse_target_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_target(spec)


def _dev() -> Dataset:
    ex = [
        Example("good", "positive"),
        Example("bad", "negative"),
        Example("meh", "positive"),
        Example("great good", "positive"),
        Example("awful", "negative"),
        Example("so so", "negative"),
    ]
    return Dataset(tuple(ex * 5), ("negative", "positive"))


def test_calibrate_builds_policy_and_sets_gate_temperature() -> None:
    gate = KeywordGate()
    report = calibrate(gate, _dev(), Budget(0.5))
    p = report.policy
    assert p.labels == gate.labels and gate.temperature == p.temperature
    assert p.metrics["llm_rate"] <= 0.5
    assert set(p.class_recall) == {"negative", "positive"}
    text = report.format()
    assert "NLL" in text and "ECE" in text and "*" in text


def test_calibrate_rejects_unknown_labels() -> None:
    dev = Dataset((Example("good", "neutral"),), ("neutral",))
    with pytest.raises(DataError, match="neutral"):
        calibrate(KeywordGate(), dev, Budget(0.3))


def _plain_dev(n: int) -> Dataset:
    labels = ("negative", "positive")
    return Dataset(tuple(Example(f"plain {i}", labels[i % 2]) for i in range(n)), labels)


def test_measure_llm_refuses_a_measurement_that_is_mostly_failures() -> None:
    def dead(req: object) -> str:
        raise LLMError("connection refused")

    once = RetryPolicy(attempts=1)
    with pytest.raises(LLMError, match=r"10 of 10 LLM calls failed \(stopped .*connection refused"):
        measure_llm(KeywordGate(), _plain_dev(30), dead, sample=30, retry=once)


def test_measure_llm_counts_some_failures_as_wrong_and_says_so() -> None:
    dev = _plain_dev(30)

    def flaky(req: LLMRequest) -> str:
        if int(req.text.split()[1]) % 3 == 0:
            raise LLMError("HTTP 503")
        return "negative"

    m = measure_llm_sample(KeywordGate(), dev, flaky, sample=30, retry=RetryPolicy(attempts=1))
    assert (m.asked, m.failed, m.stopped_early) == (30, 10, False)
    assert m.reasons[0][1] == 10 and "HTTP 503" in m.reasons[0][0]
    for i, e in enumerate(dev.examples):
        assert m.correct[i] == float(i % 3 != 0 and e.label == "negative")
    m.raise_if_failing()  # a third failing is counted as wrong, not refused
    with pytest.raises(LLMError, match="10 of 30 LLM calls failed"):
        m.raise_if_failing(max_failure_rate=0.2)
