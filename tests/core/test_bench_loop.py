"""bench/loop.py's options: ``--demo`` (``make loop-demo``) is lighter and never touches the
evidence's base gate, work folder or results."""

from __future__ import annotations

from pathlib import Path

from bench.loop import DEMO, ROOT, parse_args


def test_demo_preset_replaces_defaults_only_and_keeps_the_evidence_apart() -> None:
    full = parse_args([])
    assert (full.base_train, full.max_length, full.distill_rounds) == (2000, 128, 2)
    assert full.mr_eval == 0  # all of MR test
    assert Path(full.out) == ROOT / "bench" / "results" / "loop.json"
    demo = parse_args(["--demo", "--amazon-eval", "100"])
    assert demo.amazon_eval == 100  # given explicitly: wins over the preset
    assert all(getattr(demo, k) == v for k, v in DEMO.items() if k != "amazon_eval")
    assert Path(demo.work) != Path(full.work) and "bench/results" not in demo.out
    assert (demo.round_size, demo.rounds) == (full.round_size, full.rounds)  # same traffic
