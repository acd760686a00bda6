from __future__ import annotations

from pathlib import Path

import pytest

from datashunt import ConfigError, ShuntPolicy


def test_defaults_and_route() -> None:
    p = ShuntPolicy(labels=("neg", "pos"), threshold=0.8)
    assert p.routes_small(0.8) and not p.routes_small(0.79)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.7}, "threshold must be in [0, 1], got 1.7"),
        ({"threshold": float("nan")}, "threshold must be in [0, 1]"),
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"prune_epsilon": 1.0}, "prune_epsilon must be in [0, 1)"),
        ({"class_recall": {"other": 0.9}}, "unknown labels ['other']"),
        ({"min_candidates": 0}, "min_candidates must be >= 1"),
    ],
)
def test_validation_messages(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ShuntPolicy(labels=("neg", "pos"), **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize("labels", [(), ("a", "a"), ("a", "")])
def test_bad_label_sets(labels: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        ShuntPolicy(labels=labels)


def test_frozen_and_roundtrip(tmp_path: Path) -> None:
    p = ShuntPolicy(labels=("neg", "pos"), threshold=0.7, class_recall={"neg": 0.95})
    with pytest.raises(AttributeError):
        p.threshold = 0.1  # type: ignore[misc]
    path = p.save(tmp_path)
    assert path.name == "datashunt_policy.json"
    assert ShuntPolicy.load(tmp_path) == p
    assert p.with_(threshold=0.5).threshold == 0.5


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="datashunt calibrate"):
        ShuntPolicy.load(tmp_path)
    (tmp_path / "datashunt_policy.json").write_text('{"labels": ["a"], "bogus": 1}')
    with pytest.raises(ConfigError, match="unknown policy fields"):
        ShuntPolicy.load(tmp_path)
