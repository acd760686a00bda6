"""What a running shunt's store says about it: audits, LLM share, tokens, cost, drift.

:func:`summarize` reads the records of a :class:`~datashunt.store.CallStore` (opened
read-only by ``datashunt monitor``) and reports, overall and per period:

* the small route's agreement with the LLM on audits (records with ``extra["audit"]``, drawn
  at random among gate answers by ``audit_rate``: an unbiased sample of the small route), and
  its accuracy on records whose ``extra["gold"]`` holds a label the user logged; each with a
  95% Clopper-Pearson interval;
* the LLM share (audits not counted), tokens and cost (from a price table);
* the drift alarm replayed over the stored confidences and audits in time order, when the
  policy keeps its calibration confidences.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .engine.drift import DriftMonitor
from .engine.receipts import Price, price_table
from .engine.watch import REFERENCE_KEY
from .policy import ShuntPolicy
from .store import CallRecord

__all__ = ["Period", "Summary", "summarize"]

By = Literal["hour", "day", "month"]
_FORMAT = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}


def _interval(k: int, n: int) -> tuple[float, float] | None:
    from .training.guarantees.certify import clopper_pearson_lower, clopper_pearson_upper

    if n == 0:
        return None
    # two-sided 95%: each side at 97.5%
    return clopper_pearson_lower(k, n, 0.975), clopper_pearson_upper(k, n, 0.975)


@dataclass
class Period:
    """Counts over one period (or the whole store)."""

    name: str
    inputs: int = 0
    llm: int = 0
    fallback: int = 0
    audits: int = 0
    agree: int = 0
    gold: int = 0
    gold_right: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0

    def add(self, rec: CallRecord, prices: Mapping[str, Price]) -> None:
        extra = rec.extra or {}
        audit = bool(extra.get("audit"))
        if not audit:
            self.inputs += 1
            self.llm += rec.route == "llm"
            self.fallback += rec.source == "fallback"
            gold = extra.get("gold")
            if isinstance(gold, str):
                self.gold += 1
                final = rec.parsed_label if rec.source == "llm" else rec.gate_label
                self.gold_right += final == gold
        elif rec.parse_ok and rec.parsed_label is not None:
            self.audits += 1
            self.agree += rec.parsed_label == rec.gate_label
        if rec.prompt_tokens is not None or rec.completion_tokens is not None:
            self.prompt_tokens += rec.prompt_tokens or 0
            self.completion_tokens += rec.completion_tokens or 0
            price = prices.get(rec.model or "", prices.get("*"))
            if price is None:
                self.unpriced += 1
            else:
                self.cost += price.cost(rec.prompt_tokens, rec.completion_tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.name,
            "inputs": self.inputs,
            "llm_share": self.llm / self.inputs if self.inputs else None,
            "llm_share_95": _interval(self.llm, self.inputs),
            "fallbacks": self.fallback,
            "audits": self.audits,
            "audit_agreement": self.agree / self.audits if self.audits else None,
            "audit_agreement_95": _interval(self.agree, self.audits),
            "gold": self.gold,
            "gold_accuracy": self.gold_right / self.gold if self.gold else None,
            "gold_accuracy_95": _interval(self.gold_right, self.gold),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 6),
            "unpriced_calls": self.unpriced,
        }


@dataclass
class Summary:
    """The whole store, its periods, and the drift alarm's verdict."""

    total: Period
    periods: list[Period] = field(default_factory=list)
    drift: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total.to_json(),
            "periods": [p.to_json() for p in self.periods],
            "drift": self.drift,
        }


def summarize(
    records: Iterable[CallRecord],
    *,
    prices: Mapping[str, Price] | None = None,
    by: By = "day",
    policy: ShuntPolicy | None = None,
) -> Summary:
    """Summarise stored records (see the module docstring).

    Args:
        prices: model -> :class:`Price` (``"*"`` for any model) for the cost columns.
        by: the period of the over-time rows.
        policy: when it keeps its calibration confidences, the drift alarm is replayed.
    """
    table = price_table(prices)  # a dated snapshot (gpt-4o-mini-2024-07-18) finds its base price
    recs = sorted(records, key=lambda r: r.created_at)
    total = Period("all")
    periods: dict[str, Period] = defaultdict(lambda: Period(""))
    for rec in recs:
        total.add(rec, table)
        key = rec.created_at.strftime(_FORMAT[by])
        periods[key].name = key
        periods[key].add(rec, table)
    drift = None
    reference = policy.metrics.get(REFERENCE_KEY) if policy is not None else None
    if policy is not None and reference:
        n = policy.metrics.get("n")
        mon = DriftMonitor(
            reference, threshold=policy.threshold, warn=False, reference_n=int(n) if n else None
        )
        alarm = None
        for r in recs:  # in time order, as the running shunt saw them
            if (r.extra or {}).get("audit"):
                if r.parse_ok and r.parsed_label is not None:
                    alarm = mon.observe_audits([r.parsed_label == r.gate_label]) or alarm
            elif r.gate_confidence is not None:
                alarm = mon.observe([r.gate_confidence]) or alarm
        drift = {
            "test": "windowed KS of confidences, Fisher tests of the LLM share and of audit "
            "agreement; alpha 0.05 spent over the tests",
            "inputs": mon.seen,
            "audits_tested": mon.audits_seen,
            "alarm": alarm is not None,
            "detail": alarm.describe() if alarm is not None else None,
        }
    return Summary(total, [periods[k] for k in sorted(periods)], drift)
