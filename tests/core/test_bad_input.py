"""Property tests: any input gets a valid decision or a clear InputError, never a crash; user
text never alters a prompt template; any model answer ends in a configured label."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.prompts import ChatPromptTemplate

from datashunt import CallStore, Decision, InputError, Shunt, ShuntPolicy, ShuntResult
from datashunt.llm.retry import RetryPolicy
from datashunt.prompts import DEFAULT_TEMPLATE, prompt_variables, render_prompt
from langchain_datashunt import DataShuntRunnable, ShuntOutput
from tests.conftest import FakeLLM, KeywordGate
from tests.support.lc_fakes import CountingChat

LABELS = ("negative", "positive")
FAST = RetryPolicy(attempts=2, base_delay=0.001)  # empty answers are retried: quickly here
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEMPLATE_BITS = st.sampled_from(
    [
        "{text}", "{hint}", "{candidates}", "{0}", "{}", "{", "}", "{{", "}}", "{labels!r}",
        "{text.__class__.__init__.__globals__}", "{x:>{y}}", "${text}", "{{ text }}",
        "{% for x in y %}", "%s", "%(text)s", "<|im_start|>system", "\x00", "\r\n", "\u202e",
        "good", "awful",
    ]
)  # fmt: skip
# Any text: every Unicode category (control characters included), with template syntax mixed in.
TEXT = st.lists(st.one_of(st.text(max_size=30), TEMPLATE_BITS), max_size=6).map("".join)
# Lone surrogates are not valid Unicode: they must meet a clear InputError, nothing worse.
SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3).map(
    lambda s: f"good {s}"
)
NOT_TEXT = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.tuples(st.text(max_size=5)),
)
HUGE = st.text(min_size=1, max_size=20).map(lambda s: (s * (100_000 // len(s) + 1))[:100_000])
ANSWERS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["positive", "NEGATIVE.", "not positive", "positive negative", "", "  "]),
)


def _check(result: object) -> None:
    """A result or a clear input error; a result always carries a configured label."""
    if isinstance(result, InputError):
        assert str(result).startswith("input")
        return
    assert isinstance(result, ShuntResult), result
    assert result.label in LABELS
    assert "store_error" not in result.extra, result.extra


@SETTINGS
@given(texts=st.lists(st.one_of(TEXT, SURROGATES, HUGE), min_size=1, max_size=4), answer=ANSWERS)
def test_shunt_any_text_any_answer(texts: list[str], answer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = CallStore(Path(tmp) / "c.sqlite")
        shunt = Shunt(
            KeywordGate(), ShuntPolicy(labels=LABELS), llm=FakeLLM(answer), store=store, retry=FAST
        )
        for res in shunt.run_batch(texts, return_exceptions=True):
            _check(res)
        for text in texts:  # one at a time: the same outcome, raised instead of returned
            try:
                _check(shunt.run(text))
            except InputError as exc:
                _check(exc)
        store.close()


@SETTINGS
@given(value=NOT_TEXT)
def test_non_string_inputs_get_a_clear_error(value: Any) -> None:
    shunt = Shunt(KeywordGate(), llm=FakeLLM())
    out = shunt.run_batch([value, "good"], return_exceptions=True)
    assert isinstance(out[0], InputError) and "must be a str" in str(out[0])
    assert isinstance(out[1], ShuntResult) and out[1].label == "positive"
    with pytest.raises(InputError, match="input 0 must be a str"):
        shunt.run_batch([value])


@SETTINGS
@given(text=st.one_of(TEXT, HUGE), mode=st.sampled_from(["none", "soft", "hard", "both"]))
def test_user_text_never_alters_the_template(text: str, mode: str) -> None:
    d = Decision("llm", "positive", 0.6, {"negative": 0.4, "positive": 0.6}, LABELS, "r")
    policy = ShuntPolicy(labels=LABELS)
    variables = prompt_variables(d, policy, mode, text)  # type: ignore[arg-type]
    marker = "\x01MARK\x01"
    before, after = render_prompt(DEFAULT_TEMPLATE, {**variables, "text": marker}).split(marker)
    assert render_prompt(DEFAULT_TEMPLATE, variables) == before + text + after


@SETTINGS
@given(text=st.one_of(TEXT, SURROGATES), answer=ANSWERS)
def test_langchain_runnable_any_text_any_answer(text: str, answer: str) -> None:
    chat = CountingChat(answer=lambda _prompt: answer)
    runnable = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=chat, retry=FAST
    )
    [out] = runnable.batch([{"text": text}], return_exceptions=True)
    if isinstance(out, InputError):
        return
    assert isinstance(out, ShuntOutput) and out.label in LABELS
    if out.route == "llm":
        marker = "\x01MARK\x01"
        template = ChatPromptTemplate.from_messages([("human", DEFAULT_TEMPLATE)])
        shown = {**runnable.shunt.prepare([text], [runnable.shunt.decide([text])[0]])[0].variables}
        expected = template.invoke({**shown, "text": marker}).to_messages()[0].text
        before, after = str(expected).split(marker)
        assert chat.prompts[-1] == before + text + after


@SETTINGS
@given(value=NOT_TEXT)
def test_langchain_runnable_non_string_inputs(value: Any) -> None:
    runnable = DataShuntRunnable.from_gate(
        gate=KeywordGate(), policy=ShuntPolicy(labels=LABELS), llm=CountingChat()
    )
    with pytest.raises(InputError):
        runnable.invoke(value if not isinstance(value, list | tuple) else {"text": value})
