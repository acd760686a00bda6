from __future__ import annotations

import pytest

from datashunt import ConfigError, Decision, ShuntPolicy
from datashunt.prompts import (
    DEFAULT_TEMPLATE,
    hard_candidates,
    prompt_variables,
    render_prompt,
    soft_hint,
)

LABELS = ("World", "Sports", "Business", "Sci/Tech")
RELIABLE = {lab: 0.95 for lab in LABELS}


def test_soft_hint_reads_like_the_paper() -> None:
    hint = soft_hint({"negative": 0.38, "positive": 0.62}, noun="review")
    assert (
        hint
        == "A smaller model labelled this review positive with probability 0.62 (negative 0.38)."
    )


def test_hard_pruning_removes_only_confident_and_reliable() -> None:
    policy = ShuntPolicy(labels=LABELS, prune_epsilon=0.05, class_recall={**RELIABLE, "World": 0.5})
    probs = {"World": 0.01, "Sports": 0.02, "Business": 0.5, "Sci/Tech": 0.47}
    # World is unlikely but the gate is unreliable on it: it stays. Sports goes.
    assert hard_candidates(probs, policy) == ("World", "Business", "Sci/Tech")


def test_hard_pruning_never_empty_and_keeps_min_candidates() -> None:
    policy = ShuntPolicy(labels=LABELS, prune_epsilon=0.9, class_recall=RELIABLE, min_candidates=2)
    probs = {"World": 0.1, "Sports": 0.2, "Business": 0.3, "Sci/Tech": 0.4}
    assert hard_candidates(probs, policy) == ("Business", "Sci/Tech")
    one = ShuntPolicy(labels=("only",), class_recall={"only": 1.0}, prune_epsilon=0.5)
    assert hard_candidates({"only": 0.0}, one) == ("only",)


def _decision() -> Decision:
    probs = {"World": 0.01, "Sports": 0.01, "Business": 0.6, "Sci/Tech": 0.38}
    return Decision("llm", "Business", 0.6, probs, ("Business", "Sci/Tech"), "r")


@pytest.mark.parametrize(
    ("mode", "has_hint", "candidates"),
    [
        ("none", False, "World, Sports, Business, Sci/Tech"),
        ("soft", True, "World, Sports, Business, Sci/Tech"),
        ("hard", False, "Business, Sci/Tech"),
        ("both", True, "Business, Sci/Tech"),
    ],
)
def test_prompt_modes(mode: str, has_hint: bool, candidates: str) -> None:
    v = prompt_variables(_decision(), ShuntPolicy(labels=LABELS), mode, "text")  # type: ignore[arg-type]
    assert v["candidates"] == candidates
    assert bool(v["hint"]) is has_hint
    assert v["labels"] == "World, Sports, Business, Sci/Tech"


def test_user_braces_cannot_alter_the_template() -> None:
    evil = "{candidates} {hint} {0} {text.__class__} }{"
    v = prompt_variables(_decision(), ShuntPolicy(labels=LABELS), "hard", evil)
    out = render_prompt(DEFAULT_TEMPLATE, v)
    assert evil in out
    assert out.count("Business, Sci/Tech") == 1


def test_unknown_variable_and_mode() -> None:
    v = prompt_variables(_decision(), ShuntPolicy(labels=LABELS), "soft", "t")
    with pytest.raises(ConfigError, match="{question}"):
        render_prompt("Q: {question}", v)
    with pytest.raises(ConfigError, match="prompt mode"):
        prompt_variables(_decision(), ShuntPolicy(labels=LABELS), "medium", "t")  # type: ignore[arg-type]


def test_both_mode_hint_names_only_the_candidates() -> None:
    v = prompt_variables(_decision(), ShuntPolicy(labels=LABELS), "both", "t")
    assert v["hint"].startswith("A smaller model labelled this text Business with probability 0.60")
    assert "Sci/Tech 0.38" in v["hint"] and "World" not in v["hint"] and "Sports" not in v["hint"]
