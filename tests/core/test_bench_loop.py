"""bench/loop.py's options: ``--demo`` (``make loop-demo``) is lighter and never touches the
evidence's base gate, work folder or results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.loop import DEMO, ROOT, ChampionOnTest, parse_args
from datashunt import ShuntPolicy
from datashunt.data import Dataset, Example
from tests.conftest import KeywordGate


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


class _Registry:
    """A registry stand-in: one gate and its policy for every version."""

    location = "memory"

    def __init__(self, threshold: float) -> None:
        self.threshold, self.loads = threshold, 0

    def load(self, version: str, max_length: int = 128) -> tuple[KeywordGate, ShuntPolicy]:
        self.loads += 1
        gate = KeywordGate()
        return gate, ShuntPolicy(labels=gate.labels, threshold=self.threshold)


def test_the_champion_is_scored_on_test_with_the_recorded_answers() -> None:
    def data(rows: list[tuple[str, str]]) -> Dataset:
        return Dataset(tuple(Example(t, y) for t, y in rows), ("negative", "positive"))

    mr = data([("good film", "positive"), ("bad film", "positive"), ("a film", "negative")])
    amazon = data([("great blender", "positive"), ("awful kettle", "positive")])
    # the uncertain input ("a film") goes to the LLM, whose recorded answer is right
    evaluate = ChampionOnTest(mr, amazon, {"a film": "negative", "bad film": "negative"})
    registry = _Registry(threshold=0.9)
    got = evaluate(registry, "v0001")  # type: ignore[arg-type]
    assert got["mr_test_llm_share"] == 1 / 3
    assert got["mr_test_gate_accuracy"] == 2 / 3  # "a film" ties: the first label, negative
    assert got["mr_test_small_accuracy"] == 1 / 2  # good film right, bad film wrong
    assert got["mr_test_shunt_accuracy"] == 2 / 3  # the LLM fixes "a film"
    assert got["amazon_test_gate_accuracy"] == 1 / 2
    assert evaluate.llm_alone == 1 / 3  # the recorded answers alone: only "a film" right
    assert evaluate(registry, "v0001") == got and registry.loads == 1  # scored once
    nothing_small = ChampionOnTest(mr, amazon, {})(_Registry(threshold=1.0), "v0002")  # type: ignore[arg-type]
    assert np.isnan(nothing_small["mr_test_small_accuracy"])
