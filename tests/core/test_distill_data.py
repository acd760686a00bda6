"""2CD data selection without a model: what the store yields, and what each stage learns from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from datashunt import (
    Budget,
    CallRecord,
    ConfigError,
    DataError,
    DistillConfig,
    MaxAccuracy,
    PrecisionFloor,
    ShuntPolicy,
    StoreError,
)
from datashunt.gates import FloatArray
from datashunt.training import target_from_policy
from datashunt.training.distillation.distill_data import (
    open_existing_store,
    read_logged,
    select_stages,
)

LABELS = ("negative", "positive")


def llm(text: str, label: str | None, conf: float | None = 0.9, **kw: object) -> CallRecord:
    other = "positive" if label == "negative" else "negative"
    probs = {label: conf, other: 1 - conf} if label is not None and conf is not None else None
    return CallRecord(
        route="llm",
        input_text=text,
        parsed_label=label,
        parse_ok=label is not None,
        llm_confidence=conf if label is not None else None,
        llm_probs=probs,
        **kw,  # type: ignore[arg-type]
    )


def small(text: str) -> CallRecord:
    return CallRecord(route="small", input_text=text, gate_probs={"negative": 0.1, "positive": 0.9})


def records() -> list[CallRecord]:
    return [
        small("sure a"),
        small("sure b"),
        llm("unsure high", "negative", 0.95),
        llm("unsure low", "positive", 0.6),
        llm("unsure unscored", "negative", None),
        llm("unsure failed", None, None, error="LLMError: timeout"),
        llm("unsure unparsed", None, None, response="I cannot tell"),
        CallRecord(route="llm", input_text=None, parsed_label="positive", parse_ok=True),
        llm("unsure high", "positive", 0.99),  # the same input again: the latest answer wins
    ]


def teacher(texts: Sequence[str]) -> FloatArray:
    """Confident (C = 0.98) on 'sure ...' and training texts, unsure (C = 0.55) otherwise."""
    sure = np.array([0.0, 4.0])
    unsure = np.array([0.0, 0.2])
    return np.array([sure if t.startswith(("sure", "train")) else unsure for t in texts])


def select(method: str = "2cd", **kw: object):  # type: ignore[no-untyped-def]
    logged, _ = read_logged(records(), LABELS)
    args: dict[str, object] = {
        "labels": LABELS,
        "method": method,
        "threshold": 0.9,
        "policy_temperature": 1.0,
        "distill_temperature": 2.0,
        "llm_min_confidence": 0.8,
        "trust_unscored": False,
        "train_texts": ["train x", "unsure train"],
    }
    args.update(kw)
    return select_stages(logged, teacher, **args)  # type: ignore[arg-type]


def test_read_logged_skips_and_counts() -> None:
    logged, counts = read_logged(records(), LABELS)
    assert counts.records == 9
    assert (counts.llm_errors, counts.unparsed, counts.no_text) == (1, 1, 1)
    assert counts.no_llm_confidence == 1
    assert counts.duplicates == 1
    assert counts.inputs == len(logged) == 5
    assert counts.llm_answers == 3
    latest = next(r for r in logged if r.text == "unsure high")
    assert latest.llm_label == "positive" and latest.llm_confidence == pytest.approx(0.99)


def test_read_logged_order_does_not_depend_on_the_order_calls_finished() -> None:
    """Concurrent calls land in the store in any order: the distillation must not see it."""
    recs = [r for r in records() if r.input_text != "unsure high"]  # no duplicate: order-free
    forward, _ = read_logged(recs, LABELS)
    backward, _ = read_logged(list(reversed(recs)), LABELS)
    assert forward == backward
    assert [r.text for r in forward] == sorted(r.text for r in forward)


def test_read_logged_rejects_unknown_labels_and_empty_store() -> None:
    with pytest.raises(DataError, match=r"labels \['neutral'\].*gate does not know"):
        read_logged([llm("x", "negative"), llm("y", "neutral")], LABELS)
    bad_probs = CallRecord(
        route="llm", input_text="z", parsed_label="negative", parse_ok=True, llm_confidence=0.9,
        llm_probs={"negative": 0.9, "mixed": 0.1},
    )  # fmt: skip
    with pytest.raises(DataError, match="mixed"):
        read_logged([bad_probs], LABELS)
    with pytest.raises(DataError, match="no records"):
        read_logged([], LABELS)


def test_stage1_uses_only_confident_llm_answers_on_uncertain_inputs() -> None:
    s1, s2, counts = select()
    assert s1.texts == ("unsure high",)
    np.testing.assert_allclose(s1.targets, [[0.01, 0.99]])  # the LLM's distribution, soft
    assert counts.low_llm_confidence == 1  # "unsure low" (C_l = 0.6 <= δ_l) is not used
    assert counts.unscored_skipped == 1
    assert set(s2.texts) == {"sure a", "sure b", "train x"}
    assert (counts.stage2_logged, counts.stage2_train, counts.train_uncertain) == (2, 1, 1)
    # Stage 2 targets are F_s1's distribution at the distillation temperature.
    np.testing.assert_allclose(s2.targets[0], [1 / (1 + np.e**2), 1 / (1 + np.e**-2)])
    assert s2.temperature == 2.0 and s1.temperature == 1.0


def test_lower_llm_threshold_admits_more_answers() -> None:
    s1, _, counts = select(llm_min_confidence=0.5)
    assert set(s1.texts) == {"unsure high", "unsure low"} and counts.low_llm_confidence == 0


def test_unscored_answers_are_one_hot_only_when_trusted() -> None:
    s1, _, counts = select(trust_unscored=True)
    assert set(s1.texts) == {"unsure high", "unsure unscored"}
    row = s1.targets[s1.texts.index("unsure unscored")]
    np.testing.assert_array_equal(row, [1.0, 0.0])
    assert counts.unscored_skipped == 0


def test_ablations_have_no_stage2_and_finetune_uses_hard_labels() -> None:
    s1, s2, counts = select("finetune")
    np.testing.assert_array_equal(s1.targets, [[0.0, 1.0]])
    assert len(s2) == 0 and counts.stage2_logged == counts.stage2_train == 0
    assert counts.confident_logged == 2 and counts.stage1_temperature == 1.0
    s1, s2, _ = select("stage1")
    np.testing.assert_allclose(s1.targets, [[0.01, 0.99]])
    assert len(s2) == 0


def test_stage_sample_is_seeded() -> None:
    _, s2, _ = select()
    a = s2.sample(2, np.random.default_rng(3))
    b = s2.sample(2, np.random.default_rng(3))
    assert a.texts == b.texts and len(a) == 2
    assert s2.sample(None, np.random.default_rng(0)) is s2


def test_missing_store_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no call store at"):
        open_existing_store(tmp_path / "nope.sqlite")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "distil"}, "method must be one of"),
        ({"rounds": 0}, "rounds must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"threshold": 1.5}, r"threshold must be in \[0, 1\]"),
        ({"llm_min_confidence": 1.0}, r"llm_min_confidence must be in \[0, 1\)"),
        ({"stage2_max": 0}, "stage2_max must be >= 1"),
    ],
)
def test_config_is_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DistillConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "target", [Budget(0.3), PrecisionFloor(0.975), MaxAccuracy(llm_accuracy=0.9)]
)
def test_old_policy_target_is_read_back(target: Budget | PrecisionFloor | MaxAccuracy) -> None:
    policy = ShuntPolicy(labels=LABELS, target=target.describe())
    assert target_from_policy(policy) == target


def test_unreadable_policy_target_asks_for_one() -> None:
    measured = MaxAccuracy(llm_correct=[1.0, 0.0]).describe()
    with pytest.raises(ConfigError, match="--target"):
        target_from_policy(ShuntPolicy(labels=LABELS, target=measured))
    with pytest.raises(ConfigError, match="no policy target"):
        target_from_policy(None)
