"""The price of an answer: the user's price table, dated model snapshots, a maintained table.

A provider answers with the dated snapshot it ran (``gpt-4o-mini`` answers as
``gpt-4o-mini-2024-07-18``), so a table keyed by the base name finds the snapshot's price unless
the table names the snapshot itself. For models the user did not price, pydantic's
`genai-prices <https://pypi.org/project/genai-prices/>`_ (a maintained table of list prices
with its own snapshot matching, pure Python, no network at lookup) can fill in:
``price_table(..., maintained=True)`` (``pip install 'datashunt[prices]'``). A model that a
configured table cannot price is reported once, as an :class:`UnpricedModelWarning`, instead
of a silent ``cost=None``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..errors import ConfigError, DataShuntError, UnpricedModelWarning

__all__ = ["Price", "PriceTable", "Prices", "UnpricedModelWarning", "base_model", "price_table"]

# A dated snapshot's suffix: -2024-07-18 (OpenAI), -20241022 (Anthropic), -0125 / -2407.
_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


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


def base_model(model: str) -> str | None:
    """The base name of a dated snapshot (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``), else
    ``None``."""
    m = _DATED.match(model)
    return m["base"] if m else None


def _maintained_price(model: str) -> Price | None:
    """genai-prices' list price of ``model`` (its base tier), or ``None`` when it has none."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError as exc:
        raise DataShuntError(
            "the maintained price table is genai-prices, which is not installed: "
            "pip install 'datashunt[prices]'"
        ) from exc
    try:
        calc = calc_price(Usage(input_tokens=1_000_000, output_tokens=1_000_000), model_ref=model)
    except LookupError:
        return None
    return Price(float(calc.input_price), float(calc.output_price))


class PriceTable(Mapping[str, Price]):
    """Model name -> :class:`Price`, as given; lookups also find a dated snapshot's base model.

    ``table[model]`` tries the exact name, then the snapshot's base name (a dated key given
    explicitly wins), then the maintained table when enabled. ``"*"`` prices any other model
    (:meth:`price_of`).

    Args:
        prices: ``{"gpt-4o-mini": (0.15, 0.60)}`` or :class:`Price` values.
        maintained: look up models the table does not name in genai-prices.

    Example:
        >>> table = PriceTable({"gpt-4o-mini": (0.15, 0.60)})
        >>> table["gpt-4o-mini-2024-07-18"]
        Price(input_per_mtok=0.15, output_per_mtok=0.6)
    """

    def __init__(
        self,
        prices: Mapping[str, Price | tuple[float, float]] | None = None,
        *,
        maintained: bool = False,
    ) -> None:
        self._prices = {
            m: p if isinstance(p, Price) else Price(*p) for m, p in (prices or {}).items()
        }
        self.maintained = maintained
        self._found: dict[str, Price | None] = {}
        self._warned: set[str] = set()
        if maintained:
            _maintained_price("gpt-4o-mini")  # fail now, with the install hint, not mid-run

    def __getitem__(self, model: str) -> Price:
        if model in self._prices:
            return self._prices[model]
        base = base_model(model)
        if base is not None and base in self._prices:
            return self._prices[base]
        if self.maintained and model:
            if model not in self._found:
                self._found[model] = _maintained_price(model)
            found = self._found[model]
            if found is not None:
                return found
        raise KeyError(model)

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __bool__(self) -> bool:
        return bool(self._prices) or self.maintained

    def price_of(self, model: str | None) -> Price | None:
        """The price of an answer from ``model`` (``"*"`` for any model not found).

        A configured table (prices given, or the maintained one) that cannot price ``model``
        says so once per model with an :class:`UnpricedModelWarning`; an empty table means no
        cost was asked for and stays silent.
        """
        name = model or ""
        try:
            return self[name]
        except KeyError:
            pass
        if "*" in self._prices:
            return self._prices["*"]
        if self and name not in self._warned:
            self._warned.add(name)
            known = ", ".join(sorted(self._prices)) or "none given"
            warnings.warn(
                f"no price for model {model!r}: its answers get cost=None (priced models: "
                f"{known}{'; genai-prices has none either' if self.maintained else ''}). Add it "
                "to prices=, or a '*' entry for any model",
                UnpricedModelWarning,
                stacklevel=3,
            )
        return None


#: Model name -> price; ``"*"`` prices any model not named.
Prices = Mapping[str, Price]


def price_table(
    prices: Mapping[str, Price | tuple[float, float]] | None = None, *, maintained: bool = False
) -> PriceTable:
    """The one price table, from ``{"gpt-4o-mini": (0.15, 0.60)}`` or :class:`Price` values
    (a :class:`PriceTable` passes through unchanged); ``maintained=True`` adds genai-prices'
    list prices for models not named."""
    if isinstance(prices, PriceTable):
        return (
            prices if prices.maintained or not maintained else PriceTable(prices, maintained=True)
        )
    return PriceTable(prices, maintained=maintained)
