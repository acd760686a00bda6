"""Which label-free student: agreement with the LLM on held-out answers, never gold (issue 25).

One random order of a stream; the students learn from the readable LLM answers among the first
``--train`` inputs and are measured against the LLM's readable answers on all the others, with
the share of those inputs each keeps at a given agreement (its most confident ones first).

    python -m bench.student_choice --data mr --train 2000 --layers 0,2,6

``0`` layers is the frozen-embedding head (:class:`~datashunt.labelfree.EmbeddingStudent`).

The last column is a ceiling, the only place gold is read: the fewest held-out inputs that must
still go to the LLM (its unreadable answers replaced by the student's) for the whole to be as
accurate as the LLM alone (unreadable counted wrong), with the student's most confident inputs
kept by an oracle threshold. No certified policy does better with the same student.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.stream import ROOT, RUNS, embed, load_stream
from datashunt.data import find_data_dir
from datashunt.labelfree import EmbeddingStudent
from datashunt.labelfree.deferral import kept_share


def kept_at(probs: Any, agree: Any, target: float) -> float:
    """The largest share of inputs, most confident first, whose agreement is >= ``target``."""
    return kept_share(np.asarray(probs).max(axis=1), agree, target)


def llm_share_for(probs: Any, llm: Any, gold: Any, floor: float) -> float:
    """The smallest share sent to the LLM (``llm``: its labels) for accuracy >= ``floor``
    against ``gold`` when the student keeps its most confident inputs (1.0: none kept)."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    small = (probs.argmax(axis=1) == gold)[order]
    big = (np.asarray(llm) == gold)[order]
    n = len(order)
    # keeping the first k: their student answers, the LLM's for the rest
    right = (
        np.concatenate([[0], np.cumsum(small)]) + big.sum() - np.concatenate([[0], np.cumsum(big)])
    )
    ok = np.nonzero(right / n >= floor)[0]
    return float(1 - ok.max() / n) if len(ok) else 1.0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.student_choice", description=__doc__)
    p.add_argument("--data", default="mr", choices=list(RUNS))
    p.add_argument("--train", type=int, default=2000, help="inputs whose answers train")
    p.add_argument("--layers", default="0,2,6", help="tuned layers to compare (0: embedding)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "stream")
    args = p.parse_args(argv)
    file, teacher = RUNS[args.data]
    s = load_stream(find_data_dir() / file, teacher, args.data)
    perm = np.random.default_rng(args.seed).permutation(len(s.texts))
    train = perm[: args.train][s.answers[perm[: args.train]] >= 0]
    every = perm[args.train :]
    readable = s.answers[every] >= 0
    test = every[readable]
    print(f"{args.data}: {len(train)} training answers, {len(test)} held-out answers")
    gold = s.gold
    floor = None if gold is None else float((s.answers[every] == gold[every]).mean())
    if floor is not None:
        print(f"the LLM alone on the held-out inputs: {floor:.3f} (unreadable counted wrong)")
    print("| student | agreement | kept at 0.90 | kept at 0.95 | train s | LLM share needed |")
    print("|---|---|---|---|---|---|")
    for layers in [int(v) for v in args.layers.split(",")]:
        t0 = time.perf_counter()
        if layers == 0:
            x: Any = embed(s.texts, args.cache)
            student: Any = EmbeddingStudent(s.labels).fit_indices(x[train], s.answers[train])
            name = "frozen-MiniLM head"
        else:
            from datashunt.labelfree.tuned import FrozenFeatures, TuneConfig, TunedStudent

            feats = FrozenFeatures(s.texts, TuneConfig(tuned_layers=layers), cache=args.cache)
            x = np.arange(len(s.texts))
            t0 = time.perf_counter()  # the frozen layers' pass is cached, not training
            student = TunedStudent(s.labels, feats).fit_indices(x[train], s.answers[train])
            name = f"top {layers} layers fine-tuned"
        took = time.perf_counter() - t0
        p_all = student.predict_proba(x[every])
        probs = p_all[readable]
        agree = probs.argmax(axis=1) == s.answers[test]
        ceiling = "n/a (no gold)"
        if gold is not None and floor is not None:
            llm = np.where(readable, s.answers[every], p_all.argmax(axis=1))
            ceiling = f"{llm_share_for(p_all, llm, gold[every], floor):.3f}"
        print(
            f"| {name} | {agree.mean():.3f} | {kept_at(probs, agree, 0.9):.3f} | "
            f"{kept_at(probs, agree, 0.95):.3f} | {took:.0f} | {ceiling} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
