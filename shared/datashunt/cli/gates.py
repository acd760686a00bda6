"""``datashunt gates list|show|add|promote|rollback`` and ``datashunt loop``.

``--registry`` takes a folder or a database URL (see :mod:`datashunt.registry`).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from .common import existing_gate, warn

__all__ = ["register"]


class _WarnLine(logging.Handler):
    """The registry's warnings (a torn events tail, an unreadable version) as CLI lines."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage().removeprefix("datashunt: "))


def _registry(args: argparse.Namespace) -> Any:
    from ..registry import GateRegistry

    logger = logging.getLogger("datashunt.registry")
    if not any(isinstance(h, _WarnLine) for h in logger.handlers):
        logger.addHandler(_WarnLine())  # (a handler found: logging's last resort stays quiet)
    return GateRegistry(args.registry)


def _list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    versions, champ = reg.versions(), reg.champion()
    if args.json:
        print(json.dumps({"champion": champ, "versions": [v.to_json() for v in versions]}))
        return 0
    if not versions:
        print(f"{reg.location}: no gate versions yet (`datashunt gates add DIR --promote`)")
        return 0
    print(f"{'':2}{'version':9}{'parent':9}{'created (UTC)':21}{'LLM share':>10}  note")
    for v in versions:
        mark = "* " if v.version == champ else "  "
        rate = v.metrics.get("llm_rate")
        share = f"{rate:.1%}" if isinstance(rate, float) else "–"
        print(f"{mark}{v.version:9}{v.parent or '–':9}{v.created_at[:19]:21}{share:>10}  {v.note}")
    print(f"\nchampion: {champ or 'none'} (history: {' -> '.join(reg.history()) or 'empty'})")
    return 0


def _show(args: argparse.Namespace) -> int:
    reg = _registry(args)
    v = reg.get(args.version or reg.champion() or "")
    out = {**v.to_json(), "path": str(reg.path(v.version)), "champion": v.version == reg.champion()}
    print(json.dumps(out, indent=2))
    return 0


def _add(args: argparse.Namespace) -> int:
    reg = _registry(args)
    v = reg.add(existing_gate(args.gate), parent=args.parent, note=args.note or "")
    print(f"added {v.version} (digest {v.digest[:12]}, policy {v.policy_version})")
    if args.promote:
        reg.promote(v.version, reason=args.note or "added with --promote")
        print(f"champion: {v.version}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    ev = _registry(args).promote(args.version, reason=args.reason or "by hand")
    print(f"champion: {ev.version} (was {ev.previous or 'none'})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    ev = _registry(args).rollback(args.to, reason=args.reason or "by hand")
    print(f"rolled back: champion {ev.version} (was {ev.previous})")
    return 0


def _loop(args: argparse.Namespace) -> int:
    from ..loop import LoopConfig, parse_since, run_round
    from ..training import DistillConfig, parse_target
    from .distill import _read

    config = LoopConfig(
        target=parse_target(args.target),
        confidence=None if args.confidence <= 0 else args.confidence,
        tolerance=args.tolerance / 100.0,
        min_gain=args.min_gain,
        min_answers=args.min_answers,
        distill=DistillConfig(
            method=args.method,
            rounds=args.rounds,
            epochs=args.epochs,
            lr=args.lr,
            max_length=args.max_length,
            trust_unscored=True,
            stage2_max=args.stage2_max,
            seed=args.seed,
        ),
    )
    slices = {spec: _read(spec, args) for spec in args.dev_data or ()}
    report = run_round(
        args.registry,
        args.store,
        calib=_read(args.calib_data, args),
        slices=slices,
        train=_read(args.train_data, args),
        config=config,
        out_root=args.out,
        progress=not args.no_progress,
        since=parse_since(args.since) if args.since else None,
    )
    print(report.to_markdown())
    print(f"wrote {report.out_dir}/report.md and report.json")
    return 0


def register(sub: Any) -> None:
    """Add ``gates`` (with its actions) and ``loop`` to the subcommands."""
    p = sub.add_parser("gates", help="the gate registry: list, show, add, promote, roll back")
    acts = p.add_subparsers(dest="action", required=True)

    def action(name: str, helptext: str, func: Any) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = acts.add_parser(name, help=helptext)
        a.add_argument("--registry", required=True, help="registry folder or database URL")
        a.set_defaults(func=func)
        return a

    action("list", "every version; * marks the champion", _list).add_argument(
        "--json", action="store_true", help="machine-readable"
    )
    action("show", "one version's provenance and metrics", _show).add_argument(
        "version", nargs="?", help="default the champion"
    )
    a = action("add", "register a calibrated gate directory", _add)
    a.add_argument("gate", help="gate directory with its datashunt_policy.json")
    a.add_argument("--parent", help="the version it was trained from")
    a.add_argument("--note", help="free text")
    a.add_argument("--promote", action="store_true", help="make it the champion")
    a = action("promote", "make a version the champion", _promote)
    a.add_argument("version")
    a.add_argument("--reason", help="recorded with the event")
    a = action("rollback", "return to the previous champion", _rollback)
    a.add_argument("--to", help="an earlier champion (default the one before)")
    a.add_argument("--reason", help="recorded with the event")

    q = sub.add_parser(
        "loop",
        help="one round: distil the store into a challenger, compare, promote only a better one",
    )
    q.add_argument("--store", required=True, help="the call store the champion's shunt writes")
    q.add_argument("--registry", required=True, help="registry folder or database URL")
    q.add_argument(
        "--calib-data",
        required=True,
        help="labelled data from the traffic (NAME:SPLIT or a file): both gates are certified "
        "on it",
    )
    q.add_argument(
        "--dev-data",
        action="append",
        help="labelled data no accuracy may be lost on (repeatable), e.g. the original domain",
    )
    q.add_argument("--train-data", help="the champion's training data, for 2CD's stage 2")
    q.add_argument("--text-col", help="text column(s) of data files")
    q.add_argument("--label-col", help="label column of data files")
    q.add_argument("--label-names", help="map raw labels to names: 0=negative,1=positive")
    q.add_argument("--group-col", help=argparse.SUPPRESS)
    q.add_argument("--encoding", default="utf-8", help="text encoding of data files")
    q.add_argument("--target", default="precision:0.9", help="precision:P, budget:R, accuracy:A")
    q.add_argument(
        "--confidence", type=float, default=0.9, help="certify δ at this confidence (0: off)"
    )
    q.add_argument(
        "--tolerance", type=float, default=0.5, help="accuracy points a slice may lose (0.5)"
    )
    q.add_argument("--min-gain", type=float, default=0.0, help="relative LLM-share cut needed")
    q.add_argument("--min-answers", type=int, default=50, help="new LLM answers needed")
    q.add_argument("--method", choices=("2cd", "stage1", "finetune"), default="2cd")
    q.add_argument("--rounds", type=int, default=2, help="2CD stage alternations")
    q.add_argument("--epochs", type=int, default=1)
    q.add_argument("--lr", type=float, default=3e-5)
    q.add_argument("--max-length", type=int, default=128)
    q.add_argument("--stage2-max", type=int, default=1000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", help="where round-NNN/ goes (default beside a folder registry)")
    q.add_argument(
        "--since",
        help="read the records after this ISO 8601 time (UTC if no zone), or 'all' of them, "
        "instead of those since the champion was made (e.g. the shadowed traffic before a "
        "first gate)",
    )
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=_loop)
