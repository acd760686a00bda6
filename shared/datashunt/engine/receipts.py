"""Decision receipts and the user's price table: what decided a result, and what it cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..policy import ShuntPolicy
from ..types import Decision, LLMReply, Receipt

__all__ = ["Price", "Prices", "Receipt", "make_receipt", "price_table"]


@dataclass(frozen=True)
class Price:
    """A model's price in currency units per million tokens.

    Example:
        >>> Price(0.15, 0.60).cost(1000, 10)
        0.000156
    """

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if min(self.input_per_mtok, self.output_per_mtok) < 0:
            raise ConfigError(f"prices must be >= 0, got {self}")

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        return round(
            ((prompt_tokens or 0) * self.input_per_mtok
             + (completion_tokens or 0) * self.output_per_mtok) / 1e6,
            12,
        )  # fmt: skip


#: Model name -> price; ``"*"`` prices any model not named.
Prices = Mapping[str, Price]


def price_table(prices: Mapping[str, Price | tuple[float, float]] | None) -> dict[str, Price]:
    """The one price table, from ``{"gpt-4o-mini": (0.15, 0.60)}`` or :class:`Price` values."""
    out: dict[str, Price] = {}
    for model, p in (prices or {}).items():
        out[model] = p if isinstance(p, Price) else Price(*p)
    return out


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
    price = prices.get(name or "", prices.get("*")) if reply is not None else None
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
