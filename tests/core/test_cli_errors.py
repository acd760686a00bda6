"""Every CLI path a user can get wrong ends in one ``datashunt: error:`` line and exit code 2,
never a traceback (issue 17: bad encodings, empty labels, missing or wrong files, a dead LLM,
too little calibration data)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from datashunt import CallRecord, CallStore, ShuntPolicy, read_dataset
from datashunt.cli import main

LABELS = ("negative", "positive")


def one_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """The single error line of a failed command (asserting there is exactly one)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("datashunt: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def rows(n: int) -> list[tuple[str, str]]:
    good, bad = ("good great", "positive"), ("bad awful", "negative")
    return [(f"{(good, bad)[i % 2][0]} {i}", (good, bad)[i % 2][1]) for i in range(n)]


def csv_file(path: Path, n: int) -> Path:
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows(n)))
    return path


@pytest.fixture
def gate(tiny_bert: Path, tmp_path: Path) -> Path:
    """A gate folder with a policy (a copy: calibrate writes into it)."""
    out = tmp_path / "gate"
    shutil.copytree(tiny_bert, out)
    ShuntPolicy(LABELS, threshold=0.9).save(out)
    return out


# ---- data files ------------------------------------------------------------------------------

LATIN1_CSV = "text,label\ncafé good,positive\nbad,negative\n".encode("latin-1")
LATIN1_JSONL = '{"text": "café good", "label": "positive"}\n'.encode("latin-1")


@pytest.mark.parametrize(
    ("name", "raw"), [("d.csv", LATIN1_CSV), ("d.jsonl", LATIN1_JSONL)], ids=["csv", "jsonl"]
)
@pytest.mark.parametrize("command", ["train-gate", "calibrate"])
def test_non_utf8_data_names_the_file_and_the_byte_offset(
    command: str,
    name: str,
    raw: bytes,
    gate: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / name
    data.write_bytes(raw)
    args = ["--out", str(tmp_path / "g")] if command == "train-gate" else ["--gate", str(gate)]
    line = one_error(capsys, main([command, "--data", str(data), *args]))
    offset = raw.index(b"\xe9")
    assert str(data) in line and f"byte offset {offset}" in line and "--encoding" in line
    examples = read_dataset(data, encoding="latin-1").examples
    assert examples[0].text == "café good"


def test_train_gate_reads_other_encodings_with_the_option(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    body = "".join(f"café {t},{lab}\n" for t, lab in rows(12))
    data.write_bytes(b"text,label\n" + body.encode("cp1252"))
    argv = ["train-gate", "--data", str(data), "--out", str(tmp_path / "g"), "--dev-split", ""]
    argv += ["--backbone", str(tiny_bert), "--epochs", "1", "--max-length", "16"]
    assert main([*argv, "--encoding", "cp1252"]) == 0
    assert (tmp_path / "g" / "model.safetensors").is_file()


def test_train_gate_with_an_empty_label_names_the_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,positive\nbad,\nfine,positive\n")
    line = one_error(capsys, main(["train-gate", "--data", str(data), "--out", str(tmp_path)]))
    assert str(data) in line and "row 2" in line and "empty label" in line


# ---- gates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["calibrate", "predict", "distill"])
def test_a_missing_gate_folder_says_what_gate_takes(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope")
    extra = {
        "calibrate": ["--data", str(csv_file(tmp_path / "d.csv", 20))],
        "predict": ["some text"],
        "distill": ["--store", "s.sqlite", "--out", "o", "--dev-data", "d.csv"],
    }[command]
    line = one_error(capsys, main([command, "--gate", missing, *extra]))
    assert missing in line and "--gate takes a folder" in line and "omit" not in line


# ---- predict -----------------------------------------------------------------------------------


def stdin(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))


def test_predict_latin1_stdin_names_the_encoding_flag(
    gate: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "good\ncafé bad\n".encode("latin-1"))
    line = one_error(capsys, main(["predict", "--gate", str(gate)]))
    assert "stdin" in line and "byte offset 8" in line and "--encoding latin-1" in line
    assert "errors=" not in line
    stdin(monkeypatch, "good\ncafé bad\n".encode("latin-1"))
    assert main(["predict", "--gate", str(gate), "--encoding", "latin-1"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in out] == ["good", "café bad"]


def test_predict_an_over_long_input_names_the_max_chars_flag(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error(capsys, main(["predict", "--gate", str(gate), "ok", "x" * 1_000_001]))
    assert "argument 2" in line and "--max-chars" in line and "max_chars" not in line
    assert main(["predict", "--gate", str(gate), "--max-chars", "2000000", "x" * 1_000_001]) == 0
    line = one_error(capsys, main(["predict", "--gate", str(gate), "--max-chars", "3", "good"]))
    assert "4 characters, over --max-chars 3" in line


# ---- calibrate -------------------------------------------------------------------------------


def test_calibrate_refuses_too_few_rows_and_says_why(
    gate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = csv_file(tmp_path / "d.csv", 4)
    line = one_error(capsys, main(["calibrate", "--gate", str(gate), "--data", str(data)]))
    assert "at least 10 labelled rows, got 4" in line and "25%" in line and "--min-rows" in line
    assert not (gate / "datashunt_policy.json").read_text().count('"kind"')  # nothing written


def test_calibrate_on_a_small_sample_warns_and_prints_the_uncertainty(
    gate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = csv_file(tmp_path / "d.csv", 12)
    argv = ["calibrate", "--gate", str(gate), "--data", str(data), "--target", "budget:0.5"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [x for x in captured.err.splitlines() if x.startswith("datashunt: warning:")]
    assert len(warnings) == 1 and "only 12 calibration rows" in warnings[0]
    assert "100 or more" in warnings[0] and "around the 50% budget" in warnings[0]
    assert "precision" not in warnings[0]  # the budget's own figure, not a precision target's
    assert "only 12 calibration rows" not in captured.out  # said once, on stderr
    assert "LLM-call rate" in captured.out and "(95% interval " in captured.out


def test_calibrate_with_an_llm_that_never_answers_stops_and_saves_nothing(
    gate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (gate / "datashunt_policy.json").read_text()
    data = csv_file(tmp_path / "d.csv", 20)
    argv = ["calibrate", "--gate", str(gate), "--data", str(data), "--target", "accuracy"]
    argv += ["--llm-url", "http://127.0.0.1:9/v1", "--llm-sample", "4"]
    line = one_error(capsys, main(argv))
    assert "4 of 4 LLM calls failed" in line and "accuracy:A" in line
    assert (gate / "datashunt_policy.json").read_text() == before


# ---- the call store --------------------------------------------------------------------------


def test_store_stats_on_a_mistyped_path_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "runz" / "calls.sqlite"
    line = one_error(capsys, main(["store", "stats", "--store", str(typo)]))
    assert str(typo) in line and not (tmp_path / "runz").exists()


@pytest.mark.parametrize("command", ["stats", "export"])
def test_an_unknown_store_scheme_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["store", command, "--store", "foo://bar", "--out", str(tmp_path / "o.jsonl")]
    line = one_error(capsys, main(argv))
    assert "foo" in line and "scheme" in line


def _store(tmp_path: Path) -> Path:
    db = tmp_path / "c.sqlite"
    CallStore(db).add(CallRecord(route="llm", input_text="x", response="positive"))
    return db


@pytest.mark.parametrize("where", ["missing/o.jsonl", "afile/o.jsonl"])
def test_store_export_into_a_folder_that_is_not_there(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / where
    line = one_error(capsys, main(["store", "export", "--store", str(db), "--out", str(out)]))
    assert str(out) in line and str(out.parent) in line


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write to, root included: /sys refuses new files even to root."""
    probe = Path("/sys/datashunt-probe.jsonl")
    try:
        probe.open("w").close()
    except PermissionError:
        return Path("/sys")
    probe.unlink()
    folder = tmp_path / "ro"  # not root after all: a 555 folder does it
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_store_export_into_a_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path)
    folder = _read_only_folder(tmp_path)
    argv = ["store", "export", "--store", str(db), "--out", str(folder / "o.jsonl")]
    line = one_error(capsys, main(argv))
    assert "cannot write" in line and "Permission denied" in line


def test_a_file_the_system_refuses_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only folder as root cannot be made: the OS error itself is simulated here."""
    from datashunt.store import CallStore as Store

    def refuse(self: Store, path: str | Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Store, "export_jsonl", refuse)
    db = _store(tmp_path)
    argv = ["store", "export", "--store", str(db), "--out", str(tmp_path / "o.jsonl")]
    line = one_error(capsys, main(argv))
    assert "cannot write" in line and "Permission denied" in line


# ---- llm-server ------------------------------------------------------------------------------


def test_llm_server_with_a_missing_or_non_gguf_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.gguf"
    line = one_error(capsys, main(["llm-server", "--model", str(missing)]))
    assert "model file not found" in line and str(missing) in line
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    line = one_error(capsys, main(["llm-server", "--model", str(fake)]))
    assert "not a GGUF model" in line and str(fake) in line


def test_store_stats_reads_a_read_only_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path)
    db.chmod(0o444)
    try:
        assert main(["store", "stats", "--store", str(db)]) == 0
    finally:
        db.chmod(0o644)
    assert json.loads(capsys.readouterr().out)["llm_calls"] == 1
