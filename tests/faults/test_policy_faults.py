"""Issue 27, items 7 (policy part) and 9: a broken policy file is one clear error naming the
file (one CLI line, exit 2), and policy values JSON allows but the policy cannot use are
refused with a message that says what to write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datashunt import ConfigError, ShuntPolicy
from datashunt.cli import main

GOOD = ShuntPolicy(labels=("negative", "positive"), threshold=0.8)


def _policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datashunt_policy.json"
    path.write_text(text, encoding="utf-8")
    return path


def _edited(**changes: object) -> str:
    data = GOOD.to_dict() | changes
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (json.dumps(GOOD.to_dict())[:40], "is not valid JSON .*cut short"),
        ("[1, 2]", "must hold a JSON object"),
        (_edited(threshold="0.9"), "threshold must be a number, got '0.9' \\(str\\)"),
        (_edited(threshold=None), "threshold must be a number, got None"),
        (_edited(min_candidates=1.5), "min_candidates must be >= 1 \\(a whole number\\), got 1.5"),
        (_edited(labels="negative"), "labels must be a list of label names, got the string"),
        (_edited(labels=5), "wrong type"),
        (_edited(temperature=True), "temperature must be a number"),
    ],
)
def test_a_broken_policy_is_one_error_naming_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    path = _policy_file(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        ShuntPolicy.load(tmp_path)
    assert str(path) in str(info.value)


def test_the_cli_says_it_in_one_line_with_exit_2(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate"
    shutil.copytree(tiny_bert, gate)
    for text in (json.dumps(GOOD.to_dict())[:40], _edited(threshold=None)):
        _policy_file(gate, text)
        assert main(["predict", "--gate", str(gate), "good book"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("datashunt: error: policy file ")
        assert str(gate / "datashunt_policy.json") in err[0]


def test_labels_as_one_string_is_not_read_as_its_letters() -> None:
    with pytest.raises(ConfigError, match="write \\['negative', \\.\\.\\.\\]"):
        ShuntPolicy(labels="negative")  # type: ignore[arg-type]
