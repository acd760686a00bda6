from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datashunt.adapters import AnswerParser
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


@pytest.mark.parametrize(
    "text",
    [
        # issue 27, item 5: each became a confident label, recorded as source "llm"
        "The answer is positive. Ignore that, the answer is negative",
        "Positive? No wait, it is negative.",
        "positive or negative, hard to say",
        "I would not say negative",
        # neighbours of the same faults
        "Negative. Positive.",
        "positive/negative",
        "Positive, or rather negative.",
        "Maybe positive.",
        "The sentiment is positive. The sentiment is negative.",
        "neither positive nor negative",
        "Negative? I don't think it is negative.",
    ],
)
def test_contradicted_or_hedged_answers_are_refused(text: str) -> None:
    parsed = P.parse(text)
    assert not parsed.ok and parsed.label is None and "ambiguous" in parsed.reason, parsed


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Negative, not positive.", "negative"),
        ("It is negative rather than positive.", "negative"),
        ("Positive - the reviewer actually liked it.", "positive"),
        ("I would not call it negative; it is positive.", "positive"),
        ("Most likely negative.", "negative"),
    ],
)
def test_committed_answers_with_other_labels_still_parse(text: str, label: str) -> None:
    parsed = P.parse(text)
    assert parsed.ok and parsed.label == label, parsed.reason


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


# ---- property suite: the parser never returns a label the answer contradicts -----------------

LABEL_SETS = (
    ("negative", "positive", "neutral"),
    ("World", "Sports", "Business", "Sci/Tech"),
    ("joy", "sadness", "anger", "fear", "disgust"),
)
AFFIRM = ("{}", "The answer is {}.", "Label: {}", "**{}**", "I think it is {}.", "Sentiment: {}")
NEGATE = (
    "not {}",
    "It is not {}.",
    "I would not say {}.",
    "I don't think it's {}.",
    "Definitely not {}",
    "{} is wrong.",
    "never {}",
)
HEDGE = (
    "{} or {}, hard to say",
    "It could be {} or {}.",
    "Maybe {}.",
    "Either {} or {}.",
    "I'm not sure, {} perhaps.",
    "{}/{}",
    "Possibly {}, possibly {}.",
)
CORRECT = (
    "{}. Ignore that, the answer is {}",
    "{}? No wait, it is {}.",
    "The answer is {}. Actually, {}.",
    "{}, or rather {}.",
    "{}... on second thought, {}.",
    "The label is {}. Sorry, I mean {}.",
)
FILLER = ("", "The review is short.", "Reasoning: the text speaks for itself.", "Thanks!")
CASING = (str, str.lower, str.upper, str.title)


@st.composite
def answers(draw: st.DrawFn) -> tuple[AnswerParser, str, str, str | None, set[str]]:
    """(parser, kind, answer, the only label it may return or None, labels it contradicts)."""
    labels = draw(st.sampled_from(LABEL_SETS))
    a, b = draw(st.lists(st.sampled_from(labels), min_size=2, max_size=2, unique=True))
    case = draw(st.sampled_from(CASING))
    a_, b_ = case(a), case(b)
    kind = draw(st.sampled_from(["affirm", "negate", "both", "hedge", "correct"]))
    fill = draw(st.sampled_from(FILLER))
    if kind == "affirm":
        parts = [draw(st.sampled_from(AFFIRM)).format(a_), fill]
        return AnswerParser(labels), kind, " ".join(parts), a, set(labels) - {a}
    if kind == "negate":
        text = " ".join([fill, draw(st.sampled_from(NEGATE)).format(b_)])
        return AnswerParser(labels), kind, text, None, {b}
    if kind == "both":  # one label stated, another negated, in either order
        parts = [draw(st.sampled_from(AFFIRM)).format(a_), draw(st.sampled_from(NEGATE)).format(b_)]
        if draw(st.booleans()):
            parts.reverse()
        return AnswerParser(labels), kind, " ".join(p.rstrip(".") + "." for p in parts), a, {b}
    template = draw(st.sampled_from(HEDGE if kind == "hedge" else CORRECT))
    text = " ".join([template.format(a_, b_), fill])
    return AnswerParser(labels), kind, text, None, {a, b}


def _check(case: tuple[AnswerParser, str, str, str | None, set[str]]) -> None:
    parser, kind, text, allowed, contradicted = case
    parsed = parser.parse(text)
    assert parsed.label not in contradicted, (kind, text, parsed)
    if kind in ("hedge", "correct", "negate"):
        assert parsed.label is None and not parsed.ok, (kind, text, parsed)
    else:  # a committed answer is read, not just "not contradicted"
        assert parsed.label == allowed, (kind, text, parsed)


@settings(max_examples=300, deadline=None)
@given(answers())
def test_parser_never_returns_a_contradicted_label(
    case: tuple[AnswerParser, str, str, str | None, set[str]],
) -> None:
    _check(case)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(answers())
def test_parser_never_returns_a_contradicted_label_10k(
    case: tuple[AnswerParser, str, str, str | None, set[str]],
) -> None:
    _check(case)
