"""``datashunt monitor``: how a running shunt is doing, read from its call store (read-only)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError

__all__ = ["register"]


def _prices(specs: list[str] | None) -> dict[str, Any]:
    from ..engine.receipts import Price

    out = {}
    for spec in specs or ():
        model, sep, rest = spec.rpartition("=")
        try:
            inp, out_ = (float(x) for x in rest.split(","))
        except ValueError:
            sep = ""
        if not sep or not model:
            raise ConfigError(
                f"--price wants MODEL=IN,OUT (per million tokens; '*' for any model), got {spec!r}"
            )
        out[model] = Price(inp, out_)
    return out


def _pct(x: float | None, ci: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def _cmd_monitor(args: argparse.Namespace) -> int:
    from ..monitor import summarize
    from ..policy import ShuntPolicy
    from ..store import CallStore

    prices = _prices(args.price)
    policy = ShuntPolicy.load(args.policy) if args.policy else None
    store = CallStore(args.store, read_only=True)  # a mistyped path is an error, not a new store
    try:
        summary = summarize(store.iter(), prices=prices, by=args.by, policy=policy)
    finally:
        store.close()
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, default=str))
        return 0
    t = summary.total.to_json()
    print(f"inputs {t['inputs']}, LLM share {_pct(t['llm_share'], t['llm_share_95'])}")
    print(
        f"audits {t['audits']}: small route agrees with the LLM "
        f"{_pct(t['audit_agreement'], t['audit_agreement_95'])}"
        + ("" if t["audits"] else " (no audits: run the shunt with audit_rate > 0)")
    )
    if t["gold"]:
        print(
            f"gold labels {t['gold']}: accuracy {_pct(t['gold_accuracy'], t['gold_accuracy_95'])}"
        )
    cost = f", cost {t['cost']:.4f}" if prices else " (no --price: no cost)"
    print(f"tokens {t['prompt_tokens']} in, {t['completion_tokens']} out{cost}")
    drift = summary.drift
    if drift is None:
        print("drift: not checked (pass --policy with a policy from this release's calibrate)")
    else:
        print("drift: ALARM - " + drift["detail"] if drift["alarm"] else "drift: no alarm")
    print(
        f"\n{'period':16} {'inputs':>7} {'LLM share':>10} {'audits':>7} {'agree':>7} {'tokens':>9}"
    )
    for p in summary.periods:
        r = p.to_json()
        share = "-" if r["llm_share"] is None else f"{r['llm_share']:.1%}"
        agree = "-" if r["audit_agreement"] is None else f"{r['audit_agreement']:.1%}"
        tokens = r["prompt_tokens"] + r["completion_tokens"]
        print(
            f"{r['period']:16} {r['inputs']:>7} {share:>10} {r['audits']:>7} {agree:>7} {tokens:>9}"
        )
    return 0


def register(sub: Any) -> None:
    """Add ``monitor`` to the subcommands."""
    p = sub.add_parser(
        "monitor", help="audits, LLM share, tokens, cost and drift of a running shunt"
    )
    p.add_argument("--store", required=True, help="SQLite path or SQLAlchemy URL (read-only)")
    p.add_argument("--policy", help="the shunt's policy (gate folder or file): replays drift")
    p.add_argument("--by", choices=("hour", "day", "month"), default="day")
    p.add_argument(
        "--price",
        action="append",
        metavar="MODEL=IN,OUT",
        help="price per million input/output tokens ('*' for any model); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_monitor)
