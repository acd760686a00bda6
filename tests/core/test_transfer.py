from __future__ import annotations

import pytest

from datashunt import ConfigError, PromptTransfer
from datashunt.transfer import approx_tokens, split_sentences
from tests.conftest import KeywordGate


def test_split_sentences() -> None:
    assert split_sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]


def test_keeps_decisive_sentences_in_order_within_budget() -> None:
    gate = KeywordGate()
    text = (
        "I bought it on a Tuesday for my cousin. It is great. The box was blue and large. "
        "Shipping took four days in all. Really good value."
    )
    res = PromptTransfer(gate, budget=10).apply([text])[0]
    assert res.text == "It is great. Really good value."
    assert res.kept == (1, 4) and res.n_sentences == 5
    assert res.tokens_after <= 10 < res.tokens_before
    assert res.tokens_saved == res.tokens_before - res.tokens_after > 0


def test_short_text_untouched_and_one_gate_pass() -> None:
    gate = KeywordGate()
    long = "Good. " + "Filler words here. " * 20 + "Bad ending."
    out = PromptTransfer(gate, budget=8).apply(["short and good.", long, long])
    assert out[0].text == "short and good." and not out[0].changed
    assert out[1].changed and out[2].changed
    assert gate.calls == 1  # every sentence of every long text scored in one pass


def test_single_oversized_sentence_is_cut() -> None:
    res = PromptTransfer(KeywordGate(), budget=5).apply(["word " * 50 + "good. " + "x " * 60])[0]
    assert approx_tokens(res.text) <= 5 and res.changed


def test_budget_validation() -> None:
    with pytest.raises(ConfigError):
        PromptTransfer(KeywordGate(), budget=0)
