"""Calibration targets are values: they round-trip exactly through the policy file as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from datashunt import Budget, ConfigError, MaxAccuracy, PrecisionFloor, ShuntPolicy, calibrate
from datashunt.data import Dataset, Example
from datashunt.training import (
    Target,
    describe_target,
    parse_target,
    target_from_json,
    target_from_policy,
)
from tests.conftest import KeywordGate

LABELS = ("negative", "positive")
AWKWARD = 0.1 + 0.2  # 0.30000000000000004: no decimal rendering short of repr keeps it

TARGETS: list[Target] = [
    Budget(AWKWARD),
    Budget(0.125),  # the old prose kept one decimal of a percentage: 12%
    Budget(0.0),
    Budget(1.0),
    PrecisionFloor(AWKWARD),
    PrecisionFloor(0.9749999999999999),
    PrecisionFloor(1.0),
    MaxAccuracy(llm_accuracy=AWKWARD),
    MaxAccuracy(llm_accuracy=2 / 3),
    MaxAccuracy(llm_accuracy=0.0),
    MaxAccuracy(llm_correct=[1.0, 0.0, math.nan, 1.0, math.nan]),
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: json.dumps(t.to_json()))
def test_every_target_round_trips_exactly_through_the_policy_file(
    target: Target, tmp_path: Path
) -> None:
    policy = ShuntPolicy(labels=LABELS, threshold=AWKWARD, target=target.to_json())
    loaded = ShuntPolicy.load(policy.save(tmp_path))
    assert loaded == policy
    back = target_from_json(loaded.target)  # type: ignore[arg-type]
    assert type(back) is type(target) and back == target
    assert back.to_json() == target.to_json()  # every float bit for bit (repr in JSON)
    if isinstance(target, MaxAccuracy) and target.llm_correct is not None:
        assert isinstance(back, MaxAccuracy) and back.llm_correct is not None
        np.testing.assert_array_equal(back.llm_correct, target.llm_correct)  # NaN where NaN
    # standard JSON: no NaN token in the file
    assert "NaN" not in (tmp_path / "datashunt_policy.json").read_text()


def test_calibrate_stores_the_target_as_data(tmp_path: Path) -> None:
    ex = [Example(t, lab) for t, lab in [("good", "positive"), ("bad", "negative")] * 6]
    report = calibrate(KeywordGate(), Dataset(tuple(ex), LABELS), Budget(AWKWARD))
    assert report.policy.target == {"kind": "budget", "max_llm_rate": AWKWARD}
    loaded = ShuntPolicy.load(report.policy.save(tmp_path))
    assert target_from_policy(loaded) == Budget(AWKWARD)
    assert target_from_policy(loaded).to_json()["max_llm_rate"] == AWKWARD
    assert "budget: LLM-call rate <= 30%" in report.format()


def test_old_policy_files_with_a_prose_target_still_load(tmp_path: Path) -> None:
    old = {"labels": list(LABELS), "threshold": 0.8, "target": "budget: LLM-call rate <= 30%"}
    (tmp_path / "datashunt_policy.json").write_text(json.dumps(old))
    policy = ShuntPolicy.load(tmp_path)
    assert policy.target == old["target"] and describe_target(policy.target) == old["target"]
    assert target_from_policy(policy) == Budget(0.3)


def test_a_measured_target_is_not_reused_on_other_rows() -> None:
    policy = ShuntPolicy(labels=LABELS, target=MaxAccuracy(llm_correct=[1.0, 0.0]).to_json())
    with pytest.raises(ConfigError, match="--target"):
        target_from_policy(policy)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "nope"}, "unknown target kind 'nope'"),
        ({"max_llm_rate": 0.3}, "unknown target kind None"),
        ({"kind": "budget"}, "needs a number 'max_llm_rate'"),
        ({"kind": "budget", "max_llm_rate": "0.3"}, "needs a number"),
        ({"kind": "budget", "max_llm_rate": 1.5}, r"max_llm_rate must be in \[0, 1\]"),
        ({"kind": "accuracy", "llm_correct": "1,0"}, "must be a list"),
    ],
)
def test_bad_target_data_says_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        target_from_json(data)


def test_policy_checks_the_target_shape() -> None:
    with pytest.raises(ConfigError, match="must name its 'kind'"):
        ShuntPolicy(labels=LABELS, target={"max_llm_rate": 0.3})
    with pytest.raises(ConfigError, match=r"to_json\(\)"):
        ShuntPolicy(labels=LABELS, target=Budget(0.3))  # type: ignore[arg-type]


def test_cli_specs_and_descriptions_are_the_edges() -> None:
    assert parse_target("budget:0.30000000000000004") == Budget(AWKWARD)
    assert describe_target(Budget(0.3)) == "budget: LLM-call rate <= 30%"
    assert describe_target(PrecisionFloor(0.97).to_json()).startswith("precision floor")
    assert describe_target(None) == ""


def test_the_training_api_is_pinned() -> None:
    import datashunt.training as training

    assert set(training.__all__) == {
        "DISTILL_REPORT_FILE", "MIN_CALIBRATION_ROWS", "RECOMMENDED_CALIBRATION_ROWS",
        "TRAIN_REPORT_FILE", "Budget", "CalibrationReport", "CoverageRow", "DistillConfig",
        "DistillReport", "Distiller", "LLMMeasurement", "LoggedInput", "LogitsGate",
        "MaxAccuracy", "OptimConfig", "PhaseLoss", "PrecisionFloor", "SelectionCounts",
        "SliceFigures", "StageData", "StageLoss", "StoreCounts", "Target", "TrainConfig",
        "TrainReport", "TrainingLoop", "accuracy", "calibrate", "check_calibration_rows",
        "choose_threshold", "class_recall", "coverage_table", "describe_target",
        "distill_gate", "expected_calibration_error", "fit_temperature", "format_table",
        "measure_llm", "measure_llm_sample", "negative_log_likelihood", "parse_target",
        "target_from_json", "target_from_policy", "train_gate", "wilson_interval",
        "Certified", "ConformalSets", "Guarantee", "certify_threshold", "conformal_set",
        "fit_conformal",
    }  # fmt: skip
    assert all(hasattr(training, name) for name in training.__all__)
