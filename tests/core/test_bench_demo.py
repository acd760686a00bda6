"""``make demo`` (bench/demo.py) without a model: each table row's runnable, its scoring and
the table, on a keyword gate and a counting chat model."""

from __future__ import annotations

from pathlib import Path

from bench.demo import SENTIMENT_TEMPLATE, Row, _format, _row, demo_runnable
from datashunt import CallStore, ShuntPolicy
from tests.conftest import KeywordGate
from tests.support.lc_fakes import CountingChat


def test_a_row_sends_the_uncertain_reviews_with_the_sentiment_prompt(tmp_path: Path) -> None:
    gate = KeywordGate()
    policy = ShuntPolicy(labels=gate.labels, threshold=0.9)
    chat = CountingChat(answer=lambda _prompt: "negative")
    store = CallStore(tmp_path / "calls.sqlite")
    runnable = demo_runnable(gate, policy, chat, "hard", store)
    texts = ["a good blender", "it arrived on a Tuesday", "awful"]
    outs = runnable.batch(texts)
    assert [o.route for o in outs] == ["small", "llm", "small"]
    assert chat.calls == 1 and "it arrived on a Tuesday" in chat.prompts[0]
    first_line = SENTIMENT_TEMPLATE.split("{")[0].strip()
    assert first_line and first_line in chat.prompts[0]  # the demo's task prompt, not generic
    assert store.count(route="llm") == 1  # the LLM call is recorded, the small ones are not
    row = _row("Data Shunt, hard prompt", outs, ["positive", "negative", "negative"], 2.0)
    assert (row.accuracy, row.llm_rate) == (1.0, 1 / 3)
    table = _format([row, Row("LLM alone", 0.5, 1.0, 1234, 3.25)], 3)
    assert "| Data Shunt, hard prompt | 1.0000 | 33.3% |" in table
    assert "| LLM alone | 0.5000 | 100.0% | 1,234 | 3.2 s |" in table
