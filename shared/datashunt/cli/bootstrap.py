"""``datashunt bootstrap``: the first gate, from the LLM's answers in the store alone.

A shunt with no gate shadows: every input goes to the LLM and each answer is recorded with its
parsed label. This command reads those answers (an unparsed or unreadable answer is never a
training label), holds a random part of them out, fits the student on the rest
(:mod:`datashunt.labelfree`: the frozen-embedding head in seconds, or with ``--student tuned``
MiniLM's top layers fine-tuned, minutes on a CPU) and certifies δ for the fidelity target on
the held-out part (agreement with the LLM on the small route, Learn then Test). Only when some
δ certifies is the gate registered and promoted; otherwise it prints how many more answers it
needs and exits 0: the shunt keeps shadowing.

    datashunt bootstrap --store runs/calls.sqlite --labels negative,positive \\
        --registry runs/gates --target 0.95 --confidence 0.95
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["register", "run_bootstrap"]


def _labels(spec: str) -> tuple[str, ...]:
    labels = tuple(x.strip() for x in spec.split(",") if x.strip())
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(f"--labels needs at least two distinct labels, e.g. a,b; got {spec!r}")
    return labels


def run_bootstrap(
    args: argparse.Namespace, *, embed: Any = None, out: Any = print
) -> dict[str, Any]:
    """The command's work, returned as a summary (``embed``: texts -> embeddings, for tests;
    by default the backbone's MiniLM encoder).

    Raises:
        StoreError: no store at ``--store``.
        ConfigError: bad labels, target, confidence or holdout.
    """
    from ..labelfree import RoundConfig, answers_to_collect, holdout_mask, train_round
    from ..store import CallStore
    from ..training.distillation.distill_data import open_existing_store, read_logged

    labels = _labels(args.labels)
    cfg = RoundConfig(
        target=args.target, confidence=args.confidence, scores=("max",), holdout=args.holdout
    )
    store = open_existing_store(args.store)
    try:
        logged, counts = read_logged(store.iter(), labels)
    finally:
        if isinstance(store, CallStore):
            store.close()
    answered = [li for li in logged if li.llm_label is not None]
    summary: dict[str, Any] = {
        "answers": len(answered),
        "unparsed_skipped": counts.unparsed,
        "errors_skipped": counts.llm_errors,
        "registered": None,
    }
    readable = len(answered) / max(1, len(answered) + counts.unparsed)
    y = np.array([labels.index(str(li.llm_label)) for li in answered], dtype=np.int64)
    if len(answered) < args.min_answers or len(np.unique(y)) < 2:
        summary["more_answers"] = max(args.min_answers - len(answered), 1)
        out(
            f"{len(answered)} readable LLM answer(s) of {len(np.unique(y))} label(s) "
            f"({counts.unparsed} unparsed skipped): too few to train a first gate; keep the "
            f"shunt shadowing for at least {summary['more_answers']} more answers"
        )
        return summary
    texts = [li.text for li in answered]
    held = holdout_mask(len(y), args.holdout, args.seed)
    new = None
    if getattr(args, "student", "embedding") == "tuned":
        from ..labelfree.tuned import FrozenFeatures, TuneConfig, TunedStudent

        cfg_t = TuneConfig(tuned_layers=args.tuned_layers)
        new = TunedStudent(labels, FrozenFeatures(texts, cfg_t, args.backbone), seed=args.seed)
        x = np.arange(len(texts))
    else:
        x = embed(texts) if embed is not None else _encoder(args.backbone)(texts)
    r = train_round(
        x[~held], y[~held], x[held], y[held], labels, cfg, seed=args.seed, new_student=new
    )
    cert = r.certificate
    summary["certificate"] = cert.describe()
    summary["threshold"] = cert.threshold
    summary["small_share"] = cert.small_share
    out(
        f"{len(answered)} readable LLM answers ({counts.unparsed} unparsed skipped): "
        f"{int((~held).sum())} to train, {int(held.sum())} held out"
    )
    out(cert.describe())
    if not cert.certified:
        more = answers_to_collect(cert, holdout_share=args.holdout, readable_share=readable)
        summary["more_answers"] = more
        out(
            "nothing registered; the shunt keeps shadowing. "
            + (
                f"About {more} more LLM answers would certify it at the rates seen."
                if more is not None
                else "At the agreement seen, no number of answers certifies this target: "
                "lower --target or wait for a better student."
            )
        )
        return summary
    summary["registered"] = _register(args, r, labels, counts.unparsed)
    out(f"registered and promoted {summary['registered']} in {args.registry}")
    return summary


def _encoder(backbone: str | None) -> Any:
    from ..gates.embedding import EmbeddingGate

    gate = EmbeddingGate(("a", "b"), np.zeros((2, 1)), np.zeros(2), backbone=backbone)
    return gate.embed


def _register(args: argparse.Namespace, r: Any, labels: tuple[str, ...], unparsed: int) -> str:
    from ..policy import ShuntPolicy
    from ..registry import GateRegistry

    cert = r.certificate
    with tempfile.TemporaryDirectory() as tmp:
        if hasattr(r.student, "save_gate"):  # fine-tuned: the encoder is saved inside the gate
            r.student.save_gate(tmp)
        else:
            r.student.to_gate(args.backbone).save(tmp)
        policy = ShuntPolicy(
            labels=labels,
            threshold=cert.threshold,
            target={"kind": "fidelity", "min_agreement": cert.target},
            guarantee=cert.guarantee.to_json(),
            metrics={
                "holdout_answers": cert.n_holdout,
                "holdout_agreement": cert.agreement,
                "small_share": cert.small_share,
                "llm_rate": 1.0 - cert.small_share,  # on the held-out answers (gates list)
                "agreement_bound": cert.bound,
            },
        )
        policy.save(Path(tmp))
        with GateRegistry(args.registry) as reg:
            v = reg.add(
                tmp,
                provenance={
                    "source": "bootstrap",
                    "store": str(args.store),
                    "train_answers": r.student.n_answers,
                    "unparsed_skipped": unparsed,
                },
                metrics=dict(policy.metrics),
                note=cert.describe(),
            )
            reg.promote(v.version, reason="bootstrap: " + cert.describe())
            return v.version


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    run_bootstrap(args)
    return 0


def register(sub: Any) -> None:
    """Add ``bootstrap`` to the subcommands."""
    p = sub.add_parser(
        "bootstrap",
        help="train, certify and register the first gate from the store's LLM answers",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--store", required=True, help="SQLite path or SQLAlchemy URL")
    p.add_argument("--labels", required=True, help="the label names, comma-separated")
    p.add_argument("--registry", required=True, help="gate registry (folder or SQL URL)")
    p.add_argument("--target", type=float, default=0.95, help="fidelity floor (default 0.95)")
    p.add_argument("--confidence", type=float, default=0.95, help="default 0.95")
    p.add_argument("--holdout", type=float, default=0.3, help="answers held out (default 0.3)")
    p.add_argument("--min-answers", type=int, default=50, help="fewest answers to try")
    p.add_argument("--backbone", default=None, help="sentence-transformers dir (default MiniLM)")
    p.add_argument(
        "--student",
        choices=("embedding", "tuned"),
        default="embedding",
        help="frozen-embedding head (seconds) or MiniLM's top layers fine-tuned (minutes)",
    )
    p.add_argument(
        "--tuned-layers", type=int, default=6, help="layers fine-tuned, from the top (tuned)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_bootstrap)
