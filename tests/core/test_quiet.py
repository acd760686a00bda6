"""Quiet by default: a library call prints no progress bar and no third-party load report;
calibration warns once about few rows, with the target it was given; the training record
holds what the training used."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from datashunt.cli import main
from datashunt.data import Dataset, Example
from datashunt.training import TrainConfig, train_gate
from datashunt.training.guarantees.calibration import few_rows_warning
from datashunt.training.guarantees.targets import Budget, MaxAccuracy, PrecisionFloor

NOISE = ("Loading weights", "LOAD REPORT", "it/s]", "not sharded")
SMALL = Dataset(
    tuple(Example(t, lab) for t, lab in [("good film", "positive"), ("bad film", "negative")] * 4),
    ("negative", "positive"),
)


@pytest.fixture
def bars_on() -> None:
    """transformers' progress bars as a fresh process has them (another test may have turned
    them off already, which would hide a load that prints one)."""
    import transformers

    transformers.utils.logging.enable_progress_bar()


@pytest.fixture
def transformers_log() -> Iterator[list[str]]:
    """What transformers logs at WARNING or above during the test. Its library logger does not
    propagate and its handler keeps the stderr of import time, so capfd alone cannot see it."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    seen: list[str] = []
    handler = Keep(logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def headless_bert(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A tiny BERT encoder without a classification head (like all-MiniLM-L6-v2)."""
    from transformers import AutoModel

    out = tmp_path_factory.mktemp("headless")
    AutoModel.from_pretrained(str(tiny_bert)).save_pretrained(str(out))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_bert / name).is_file():
            shutil.copy(tiny_bert / name, out / name)
    return out


def test_loading_an_embedding_gate_prints_nothing(
    bars_on: None, tiny_bert: Path, capfd: pytest.CaptureFixture[str], transformers_log: list[str]
) -> None:
    from datashunt import EmbeddingGate

    capfd.readouterr()
    gate = EmbeddingGate(["a", "b"], np.zeros((2, 32)), np.zeros(2), backbone=tiny_bert)
    assert gate.predict_proba(["good"]).shape == (1, 2)
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    assert transformers_log == []  # the classifier's head left out is not reported


def test_fine_tuning_prints_no_load_report(
    bars_on: None,
    headless_bert: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    transformers_log: list[str],
) -> None:
    capfd.readouterr()
    cfg = TrainConfig(epochs=1, batch_size=4, max_length=16)
    train_gate(SMALL, tmp_path / "gate", backbone=headless_bert, config=cfg, progress=False)
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    assert transformers_log == []  # the new head's "MISSING" weights are expected


def test_a_library_training_call_shows_no_bar_unless_asked(
    tiny_bert: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = TrainConfig(epochs=1, batch_size=4, max_length=16)
    capfd.readouterr()
    train_gate(SMALL, tmp_path / "quiet", backbone=tiny_bert, config=cfg)
    assert "train-gate" not in capfd.readouterr().err
    train_gate(SMALL, tmp_path / "bar", backbone=tiny_bert, config=cfg, progress=True)
    assert "train-gate: 100%" in capfd.readouterr().err  # the bar the CLI asks for


def test_an_embedding_gate_records_the_settings_it_used(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(kind="embedding", epochs=7, lr=1e-3, batch_size=3, seed=5)
    train_gate(SMALL, tmp_path / "emb", backbone=tiny_bert, config=cfg, progress=False)
    record = json.loads((tmp_path / "emb" / "datashunt_train.json").read_text(encoding="utf-8"))
    used = record["config"]
    assert not {"epochs", "lr", "warmup_ratio", "weight_decay"} & set(used)
    assert used["kind"] == "embedding" and used["seed"] == 5 and used["batch_size"] == 64
    assert used["l2"] == pytest.approx(1e-3) and used["max_iter"] == 200
    assert used["max_seq_length"] == 64  # the tiny BERT's, not TrainConfig's 256
    assert record["backbone"] == str(tiny_bert)


def test_a_fine_tuned_gate_records_its_whole_config(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=4, max_length=16)
    train_gate(SMALL, tmp_path / "ft", config=cfg, backbone=tiny_bert, progress=False)
    record = json.loads((tmp_path / "ft" / "datashunt_train.json").read_text(encoding="utf-8"))
    assert record["config"]["epochs"] == 1 and record["config"]["max_length"] == 16


@pytest.mark.parametrize(
    ("n", "target", "says"),
    [
        (150, PrecisionFloor(0.99), ["only 150", "300 or more for this target", "99% precision"]),
        (60, PrecisionFloor(0.975), ["120 or more", "97.5% precision"]),
        (12, Budget(0.5), ["100 or more", "±28%", "50% budget"]),
        (40, MaxAccuracy(llm_accuracy=0.9), ["100 or more", "by 2.5%"]),
    ],
)
def test_the_few_rows_warning_quotes_the_target(n: int, target: object, says: list[str]) -> None:
    message = few_rows_warning(n, target)  # type: ignore[arg-type]
    assert message is not None and all(s in message for s in says), message
    if not isinstance(target, PrecisionFloor):
        assert "precision" not in message


@pytest.mark.parametrize(
    ("n", "target"), [(50, PrecisionFloor(0.9)), (100, PrecisionFloor(0.97)), (100, Budget(0.3))]
)
def test_enough_rows_for_the_target_are_not_warned_about(n: int, target: object) -> None:
    assert few_rows_warning(n, target) is None  # type: ignore[arg-type]


def test_calibrate_warns_once_with_the_precision_it_was_given(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate"
    shutil.copytree(tiny_bert, gate)
    data = tmp_path / "d.csv"
    rows = [f"good film {i},positive" if i % 2 else f"bad film {i},negative" for i in range(40)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    argv = ["calibrate", "--gate", str(gate), "--data", str(data), "--target", "precision:0.95"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert (out + err).count("only 40 calibration rows") == 1
    warning = next(line for line in err.splitlines() if "only 40 calibration rows" in line)
    assert "95% precision" in warning and "60 or more" in warning and "97%" not in warning


def test_train_gate_says_which_options_an_embedding_gate_ignores(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    rows = [f"good film {i},positive" if i % 2 else f"bad film {i},negative" for i in range(8)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    argv = ["train-gate", "--data", str(data), "--dev-split", "", "--out", str(tmp_path / "g")]
    argv += ["--kind", "embedding", "--backbone", str(tiny_bert), "--epochs", "3", "--lr", "0.1"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--epochs, --lr ignored with --kind embedding" in err
