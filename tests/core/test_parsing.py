from __future__ import annotations

import math

import pytest

from datashunt import AnswerParser
from datashunt.parsing import label_distribution_from_logprobs

P = AnswerParser(["negative", "positive"], synonyms={"positive": ["pos", "favourable"]})


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("positive", "positive"),
        ("Negative", "negative"),
        ("  NEGATIVE.  ", "negative"),
        ('"positive"', "positive"),
        ("The answer is negative.", "negative"),
        ("Sentiment: Positive", "positive"),
        ("I think this review is favourable overall", "positive"),
        ("This is not positive, it is negative.", "negative"),
        ("**Negative**\n\nThe reviewer complains about positive things rarely.", "negative"),
        ("pos", "positive"),
    ],
)
def test_parses(text: str, label: str) -> None:
    parsed = P.parse(text)
    assert parsed.ok and parsed.label == label, parsed.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("I cannot tell.", "no label"),
        ("It could be positive or negative, hard to say", "ambiguous"),
    ],
)
def test_unparseable_is_recorded_not_raised(text: str, reason: str) -> None:
    parsed = P.parse(text)
    assert not parsed.ok and parsed.label is None and reason in parsed.reason


def test_candidates_restrict_answers() -> None:
    ag = AnswerParser(["World", "Sports", "Business", "Sci/Tech"])
    assert ag.parse("sci/tech").label == "Sci/Tech"
    assert ag.parse("The category is Sci Tech").label == "Sci/Tech"
    out = ag.parse("Sports", allowed=["Business", "Sci/Tech"])
    assert not out.ok and "not among the candidates" in out.reason


def test_unknown_synonym_label() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        AnswerParser(["a"], synonyms={"b": ["x"]})


def _lp(token: str, alts: dict[str, float]) -> dict[str, object]:
    return {
        "token": token,
        "logprob": math.log(alts.get(token, 0.5)),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alts.items()],
    }


def test_llm_confidence_from_top_logprobs() -> None:
    logprobs = [
        _lp("The", {"The": 0.9, "A": 0.1}),
        _lp(" Positive", {" Positive": 0.6, " Negative": 0.2, " positive": 0.1, " Neutral": 0.1}),
    ]
    dist = label_distribution_from_logprobs(logprobs, P)
    assert dist is not None
    assert dist["positive"] == pytest.approx(0.7 / 0.9)
    assert dist["negative"] == pytest.approx(0.2 / 0.9)


def test_llm_confidence_absent_without_label_token() -> None:
    assert label_distribution_from_logprobs([_lp("Hmm", {"Hmm": 1.0})], P) is None
    assert label_distribution_from_logprobs([], P) is None
