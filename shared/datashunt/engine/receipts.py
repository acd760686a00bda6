"""Decision receipts: what decided a result, and what it cost (prices: :mod:`.prices`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..policy import ShuntPolicy
from ..types import Decision, LLMReply, Receipt
from .prices import Price, Prices, PriceTable, UnpricedModelWarning, price_table

__all__ = [
    "Price",
    "PriceTable",
    "Prices",
    "Receipt",
    "UnpricedModelWarning",
    "make_receipt",
    "price_table",
]


def make_receipt(
    policy: ShuntPolicy,
    version: str,
    decision: Decision,
    prices: Mapping[str, Price],
    *,
    reply: LLMReply | None = None,
    model: str | None = None,
    audited: bool = False,
    drift: bool = False,
) -> Receipt:
    """The receipt of one result (``reply`` when the LLM answered)."""
    name = (reply.model if reply is not None and reply.model else None) or model
    pt = reply.prompt_tokens if reply is not None else None
    ct = reply.completion_tokens if reply is not None else None
    # a dated snapshot finds its base model's price; a configured table that cannot price the
    # model warns once (PriceTable.price_of) instead of a silent cost=None
    price = price_table(prices).price_of(name) if reply is not None else None
    return Receipt(
        policy_version=version,
        threshold=policy.threshold,
        guarantee=policy.guarantee,
        p_wrong=max(0.0, 1.0 - decision.confidence),
        prompt_tokens=pt,
        completion_tokens=ct,
        cost=price.cost(pt, ct) if price is not None else None,
        model=name if reply is not None else None,
        audited=audited,
        drift=drift,
    )
