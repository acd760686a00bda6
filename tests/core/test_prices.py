"""Prices on receipts: a dated snapshot finds its base model's price, an unpriced model is
reported once and loudly, and the maintained table (genai-prices) fills in when asked."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from datashunt import LLMReply, Shunt, ShuntPolicy, ShuntResult
from datashunt.engine import Price, PriceTable, UnpricedModelWarning, price_table
from datashunt.engine.prices import base_model
from datashunt.monitor import summarize
from datashunt.store import CallStore
from tests.conftest import FakeLLM, KeywordGate

LABELS = ("negative", "positive")
SNAPSHOT = "gpt-4o-mini-2024-07-18"  # what the provider answers for "gpt-4o-mini"


def ask(prices: object, model: str, store: Path | None = None, n: int = 1) -> list[ShuntResult]:
    """``n`` uncertain inputs through a shunt whose LLM answers as ``model``."""
    llm = FakeLLM(
        lambda r: LLMReply("negative", prompt_tokens=1000, completion_tokens=10, model=model)
    )
    policy = ShuntPolicy(labels=LABELS, threshold=0.99)
    shunt = Shunt(KeywordGate(), policy, llm=llm, prices=prices, store=store)  # type: ignore[arg-type]
    out = [shunt.run(f"no idea {i}") for i in range(n)]
    assert all(isinstance(r, ShuntResult) and r.route == "llm" for r in out)
    return out  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4o-mini", None),
        ("llama-3-8b", None),
    ],
)
def test_base_model_of_a_dated_snapshot(model: str, base: str | None) -> None:
    assert base_model(model) == base


def test_a_dated_snapshot_is_priced_as_its_base_model() -> None:
    (res,) = ask({"gpt-4o-mini": (0.15, 0.60)}, SNAPSHOT)
    assert res.receipt is not None and res.receipt.model == SNAPSHOT
    assert res.receipt.cost == pytest.approx((1000 * 0.15 + 10 * 0.60) / 1e6)


def test_a_dated_key_wins_over_its_base_model() -> None:
    table = price_table({"gpt-4o-mini": (0.15, 0.60), SNAPSHOT: (1.0, 2.0)})
    assert table[SNAPSHOT] == Price(1.0, 2.0) and table["gpt-4o-mini"] == Price(0.15, 0.60)
    assert table.price_of("gpt-4o-mini-2025-01-01") == Price(0.15, 0.60)


def test_an_unpriced_model_warns_once_and_its_cost_stays_none() -> None:
    with pytest.warns(UnpricedModelWarning) as seen:
        results = ask({"gpt-4o-mini": (0.15, 0.60)}, "my-local-model", n=3)
    assert [r.receipt.cost for r in results if r.receipt] == [None, None, None]
    assert len(seen) == 1
    message = str(seen[0].message)
    assert "'my-local-model'" in message and "gpt-4o-mini" in message and "'*'" in message


@pytest.mark.parametrize("prices", [None, {}, {"*": (1.0, 1.0)}])
def test_no_table_or_a_catch_all_stays_silent(prices: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpricedModelWarning)
        (res,) = ask(prices, "my-local-model")
    assert res.receipt is not None
    assert res.receipt.cost == (pytest.approx(1010 / 1e6) if prices else None)


def test_the_maintained_table_prices_a_snapshot_the_user_did_not() -> None:
    from genai_prices import Usage, calc_price

    expected = calc_price(Usage(input_tokens=1000, output_tokens=10), model_ref=SNAPSHOT)
    (res,) = ask(price_table(maintained=True), SNAPSHOT)
    assert res.receipt is not None and res.receipt.cost is not None and res.receipt.cost > 0
    assert res.receipt.cost == pytest.approx(float(expected.total_price))
    table = PriceTable({SNAPSHOT: (9.0, 9.0)}, maintained=True)
    assert table[SNAPSHOT] == Price(9.0, 9.0)  # the user's own price comes first
    with pytest.warns(UnpricedModelWarning, match="genai-prices has none either"):
        assert table.price_of("datashunt-no-such-model") is None


def test_monitor_prices_stored_snapshots_by_their_base_model(tmp_path: Path) -> None:
    url = tmp_path / "calls.sqlite"
    ask({"gpt-4o-mini": (0.15, 0.60)}, SNAPSHOT, store=url, n=2)
    records = list(CallStore(url, read_only=True).iter())
    total = summarize(records, prices={"gpt-4o-mini": Price(0.15, 0.60)}).total.to_json()
    assert total["unpriced_calls"] == 0
    assert total["cost"] == pytest.approx(2 * (1000 * 0.15 + 10 * 0.60) / 1e6)
