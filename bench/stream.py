"""The stream benchmark (issue 25): start from nothing, learn from the LLM's answers, take over.

MR (7,353 sentences, gpt-3.5's recorded answers) and ISEAR (6,524, gpt-3.5-turbo-1106; again
with Llama-2-70B-chat) arrive as streams in 3 random orders. The policies of
:mod:`bench.stream_sim` see each sentence's MiniLM embedding and, only when they ask, the LLM's
recorded parsed answer: **no gold label reaches a policy** (``load_stream`` keeps gold apart and
only :func:`evaluate` reads it). Per window of 500 inputs and cumulatively: accuracy against
gold, LLM share, the small route's agreement with the LLM. Beside ``datashunt``: the LLM alone
(its unreadable answers counted wrong, and replaced by the student's label), OCL's rule and the
margin rule at the same total calls (their threshold bisected to datashunt's share), and the
offline ceiling: the same student trained on gold (5-fold cross-fitted) routed by its top
probability at datashunt's share.

    nice -n 5 .venv/bin/python -m bench.stream            # all three runs, 3 orders
    .venv/bin/python -m bench.stream --data mr --orders 1 --limit 2000   # a quick look

Writes ``bench/results/stream.{json,md,png}`` (+ ``stream_windows.json``: the curves).
MiniLM embeddings are cached in ``.cache/stream/``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.stream_sim import (
    FloatArray,
    IntArray,
    SimConfig,
    Trace,
    fixed_student_certificates,
    repeated_certificates,
    run_policy,
)
from datashunt.data import find_data_dir
from datashunt.labelfree import RoundConfig
from datashunt.training.guarantees.deferral import stratified_folds

ROOT = Path(__file__).resolve().parents[1]
RUNS: dict[str, tuple[str, str]] = {  # name -> (file, teacher column)
    "mr": ("mr/mr.csv", "llm_label"),
    "isear": ("isear/isear.csv", "gpt35_label"),
    "isear-llama": ("isear/isear.csv", "llama2_70b_label"),
}
WINDOW = 500


@dataclass(frozen=True)
class Stream:
    """One data set's inputs and recorded answers; ``gold`` is ``None`` when not in the file."""

    name: str
    teacher: str
    texts: list[str]
    labels: tuple[str, ...]
    answers: IntArray  # -1 = unreadable
    gold: IntArray | None


def load_stream(path: Path, teacher: str, name: str, gold_column: str = "label") -> Stream:
    """Read a CSV with ``text`` and ``teacher`` columns (and, if there, ``gold_column``)."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen = {r[teacher] for r in rows if r[teacher]}
    if gold_column in rows[0]:
        seen |= {r[gold_column] for r in rows}
    labels = tuple(sorted(seen))
    index = {lab: i for i, lab in enumerate(labels)}
    answers = np.array([index.get(r[teacher], -1) for r in rows], dtype=np.int64)
    gold = None
    if gold_column in rows[0]:
        gold = np.array([index[r[gold_column]] for r in rows], dtype=np.int64)
    return Stream(name, teacher, [r["text"] for r in rows], labels, answers, gold)


def cache_file(texts: Sequence[str], cache: Path) -> Path:
    """Where the embeddings of ``texts`` are cached (named by a hash of the texts)."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    return cache / f"minilm-{digest}.npy"


def embed(texts: Sequence[str], cache: Path) -> FloatArray:
    """Normalised MiniLM embeddings, computed once per text list and cached in ``cache``."""
    path = cache_file(texts, cache)
    if path.is_file():
        return np.asarray(np.load(path), dtype=np.float64)
    from datashunt.gates.embedding import EmbeddingGate

    gate = EmbeddingGate(("a", "b"), np.zeros((2, 1)), np.zeros(2), batch_size=128)
    x = gate.embed(list(texts))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, x.astype(np.float32))
    return x


def evaluate(trace: Trace, answers: IntArray, gold: IntArray | None) -> dict[str, Any]:
    """Cumulative and per-window figures of one pass (accuracy only when gold is given)."""
    n = len(trace.pred)
    readable = answers >= 0
    small = trace.kept & readable
    out: dict[str, Any] = {
        "llm_share": float(trace.asked.mean()),
        "last2000_share": float(trace.asked[-2000:].mean()),
        "small_share": float(trace.kept.mean()),
        "fidelity": float((trace.pred[small] == answers[small]).mean()) if small.any() else None,
        "rounds": trace.rounds,
        "promotions": [
            (p, r.certificate.score, r.certificate.threshold) for p, r in trace.promotions
        ],
    }
    ok = None if gold is None else trace.pred == gold
    if ok is not None:
        out["accuracy"] = float(ok.mean())
    win = []
    for s in range(0, n, WINDOW):
        part = slice(s, min(n, s + WINDOW))
        w: dict[str, Any] = {"end": part.stop, "llm_share": float(trace.asked[part].mean())}
        if ok is not None:
            w["accuracy"] = float(ok[part].mean())
            w["cumulative_accuracy"] = float(ok[: part.stop].mean())
        win.append(w)
    out["windows"] = win
    return out


def violations(trace: Trace, x: FloatArray, answers: IntArray, target: float) -> list[float]:
    """Each promoted gate's agreement with the LLM on the rest of the stream's inputs it keeps
    (readable answers): the certificate's promise, checked on new inputs."""
    out = []
    for t, r in trace.promotions:
        rest = np.arange(t + 1, len(x))
        keep = r.keep(x[rest]) & (answers[rest] >= 0)
        if keep.sum():
            pred = r.student.predict_proba(x[rest][keep]).argmax(axis=1)
            out.append(float((pred == answers[rest][keep]).mean()))
    return out


def matched(
    policy: str, x: FloatArray, s: Stream, cfg: SimConfig, share: float, steps: int
) -> tuple[Trace, float]:
    """Bisect ``policy``'s threshold until its LLM share is within 1 point of ``share``.

    The margin's threshold is searched as ``1 - 10 ** (-4 u)`` for ``u`` in [0, 1]: a confident
    student's margins crowd near 1, where a linear search would need many more steps."""
    lo, hi = 0.0, 1.0
    best: tuple[float, Trace, float] | None = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        param = 1.0 - 10.0 ** (-4.0 * mid) if policy == "margin" else mid
        tr = run_policy(policy, x, s.answers, s.labels, cfg, param=param)
        got = float(tr.asked.mean())
        if best is None or abs(got - share) < best[0]:
            best = (abs(got - share), tr, param)
        if abs(got - share) <= 0.01:
            break
        # margin: more calls as the threshold grows; ocl: fewer
        if (got < share) == (policy == "margin"):
            lo = mid
        else:
            hi = mid
    assert best is not None  # noqa: S101 - steps >= 1
    return best[1], best[2]


def offline_gold(
    x: FloatArray, s: Stream, share: float, cfg: SimConfig, folds: int = 5
) -> float | None:
    """The same student trained on gold (``folds``-fold cross-fitted), its least confident
    ``share`` sent to the LLM (an unreadable answer falls back to the student): the ceiling."""
    if s.gold is None:
        return None
    probs = np.zeros((len(x), len(s.labels)))
    idx = np.arange(len(x))
    for fold in stratified_folds(s.gold, folds, 0):
        rest = np.setdiff1d(idx, fold)
        st = cfg.new_student(s.labels).fit_indices(x[rest], s.gold[rest])
        probs[fold] = st.predict_proba(x[fold])
    pred = probs.argmax(axis=1)
    ask = np.argsort(probs.max(axis=1))[: round(share * len(x))]
    pred[ask] = np.where(s.answers[ask] >= 0, s.answers[ask], pred[ask])
    return float((pred == s.gold).mean())


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def run_one(
    s: Stream, x: FloatArray, args: argparse.Namespace, student: Any = None
) -> dict[str, Any]:
    """Every policy over ``args.orders`` random orders of one stream (``student``: see
    :class:`SimConfig`; ``x`` then holds rows, not embeddings)."""
    cfg = sim_config(args, student)
    per: dict[str, list[dict[str, Any]]] = {p: [] for p in ("datashunt", "margin", "ocl", "llm")}
    walls = dict.fromkeys(per, 0.0)
    agreements: list[float] = []
    for order in range(args.first_order, args.first_order + args.orders):
        perm = np.random.default_rng(1000 + order).permutation(len(x))[: args.limit]
        xo, ao = x[perm], s.answers[perm]
        go = None if s.gold is None else s.gold[perm]
        so = replace(s, answers=ao, gold=go)
        c = replace(cfg, seed=order)
        t0 = time.perf_counter()
        tr = run_policy("datashunt", xo, ao, s.labels, c)
        walls["datashunt"] += time.perf_counter() - t0
        per["datashunt"].append(evaluate(tr, ao, go))
        agreements += violations(tr, xo, ao, args.target)
        share = float(tr.asked.mean())
        for p in [q for q in ("margin", "ocl") if q in args.policies]:
            t0 = time.perf_counter()
            tp, param = matched(p, xo, so, c, share, args.bisect)
            walls[p] += time.perf_counter() - t0
            per[p].append({**evaluate(tp, ao, go), "param": param})
        if "llm" in args.policies:
            t0 = time.perf_counter()
            tl = run_policy("llm", xo, ao, s.labels, c)
            walls["llm"] += time.perf_counter() - t0
            e = evaluate(tl, ao, go)
            e["accuracy_strict"] = None if go is None else float((ao == go).mean())
            per["llm"].append(e)
        print(
            f"  {s.name} order {order}: "
            + ", ".join(
                f"{p} {per[p][-1].get('accuracy', float('nan')):.3f}@{per[p][-1]['llm_share']:.3f}"
                for p in per
                if per[p]
            ),
            flush=True,
        )
    ds_share = _mean(per["datashunt"], "llm_share") or 0.0
    t0 = time.perf_counter()
    checks = _checks(x, s, cfg, args)
    walls["datashunt"] += time.perf_counter() - t0
    runs = []
    for p, rows in [(q, r) for q, r in per.items() if r]:
        run: dict[str, Any] = {
            "data": s.name.split("-")[0],
            "teacher": s.teacher,
            "policy": p,
            "student": args.student,
            "accuracy": _mean(rows, "accuracy_strict" if p == "llm" else "accuracy"),
            "llm_share": _mean(rows, "llm_share"),
            "last2000_share": _mean(rows, "last2000_share"),
            "fidelity_target": args.target if p == "datashunt" else None,
            "fidelity_violation_rate": (
                float(np.mean([a[0] < args.target for a in checks]))
                if p == "datashunt" and checks
                else None
            ),
            "repetitions": len(checks) if p == "datashunt" else len(rows),
            "orders": len(rows),
            "wall_s": round(walls[p], 1),
        }
        if p == "llm":
            run["accuracy_with_fallback"] = _mean(rows, "accuracy")
        runs.append(run)
    details = {"per_order": per, "promoted_agreements": agreements, "checks": checks}
    if "offline-gold" not in args.policies:
        return {"runs": runs, "details": details}
    t0 = time.perf_counter()
    gold_acc = offline_gold(x, s, ds_share, cfg, 2 if student is not None else 5)
    runs.append(
        {
            **runs[0],
            "policy": "offline-gold",
            "accuracy": gold_acc,
            "llm_share": ds_share,
            "last2000_share": None,
            "fidelity_target": None,
            "fidelity_violation_rate": None,
            "repetitions": 2 if student is not None else 5,
            "orders": 0,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )
    return {"runs": runs, "details": details}


def sim_config(args: argparse.Namespace, student: Any = None) -> SimConfig:
    """The shared schedule and the datashunt policy's settings, from the command line."""
    rc = RoundConfig(
        target=args.target,
        confidence=args.confidence,
        estimate_needed=False,
        choose=args.choose,
    )
    return SimConfig(
        round=rc,
        growth=args.growth,
        student=student,
        audit_holdout=args.audit_holdout,
        spend=args.spend,
    )


def _checks(
    x: Any, s: Stream, cfg: SimConfig, args: argparse.Namespace
) -> list[tuple[float, str, float]]:
    """The fidelity checks: a fresh student per split, or one per order when fine-tuned."""
    kw = {"orders": args.orders, "splits": args.splits, "shadow": args.shadow}
    if cfg.student is not None:
        return fixed_student_certificates(x, s.answers, s.labels, cfg, **kw)
    return repeated_certificates(x, s.answers, s.labels, cfg.round, **kw)


def _student(s: Stream, args: argparse.Namespace) -> tuple[Any, Any]:
    """``(x, student factory)``: embeddings for the embedding student; for the fine-tuned one,
    row indices into the frozen layers' features of the stream's texts."""
    if args.student == "embedding":
        return embed(s.texts, args.cache), None
    from datashunt.labelfree.tuned import FrozenFeatures, TuneConfig, TunedStudent

    feats = FrozenFeatures(s.texts, TuneConfig(tuned_layers=args.tuned_layers), cache=args.cache)
    return np.arange(len(s.texts)), lambda labels: TunedStudent(labels, feats)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=",".join(RUNS), help=f"runs, from {list(RUNS)}")
    p.add_argument("--orders", type=int, default=3, help="random orders of each stream")
    p.add_argument(
        "--first-order", type=int, default=0, help="the first order's index (to add orders)"
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N inputs of each")
    p.add_argument("--target", type=float, default=0.95, help="fidelity target")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--bisect", type=int, default=6, help="bisection steps for equal calls")
    p.add_argument("--splits", type=int, default=7, help="held-out splits per order (checks)")
    p.add_argument("--shadow", type=int, default=3000, help="shadow inputs in each check")
    p.add_argument("--checks-only", action="store_true", help="redo the checks in --out only")
    p.add_argument(
        "--student",
        choices=("embedding", "tuned"),
        default="embedding",
        help="frozen-MiniLM head (minutes) or MiniLM's top layers fine-tuned (about an hour)",
    )
    p.add_argument(
        "--policies",
        default="margin,ocl,llm,offline-gold",
        type=lambda v: [q.strip() for q in v.split(",") if q.strip()],
        help="the other policies run beside datashunt (margin and ocl at equal calls; "
        "offline-gold: the student trained on gold, at datashunt's share)",
    )
    p.add_argument("--tuned-layers", type=int, default=2, help="layers fine-tuned (tuned)")
    p.add_argument(
        "--growth",
        type=float,
        default=None,
        help="a round also waits for this share of new answers (default 0; tuned 0.25)",
    )
    p.add_argument(
        "--choose",
        choices=("holdout", "train"),
        default="holdout",
        help="the deferral score: certify each (Bonferroni) or pick one on training answers",
    )
    p.add_argument(
        "--audit-holdout",
        type=float,
        default=None,
        help="share of the audits after takeover held out for certification (default 0.3; "
        "tuned: 1.0, all of them)",
    )
    p.add_argument(
        "--spend",
        action="store_true",
        help="round k certifies at spent_confidence(confidence, k): all of a stream's "
        "certificates hold together (default: each round at --confidence)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "stream")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default bench/results/stream.json (stream_tuned.json for the tuned student)",
    )
    args = p.parse_args(argv)
    tuned = args.student == "tuned"
    if args.growth is None:
        args.growth = 0.25 if tuned else 0.0
    if args.audit_holdout is None:
        args.audit_holdout = 1.0 if tuned else 0.3
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("stream_tuned.json" if tuned else "stream.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    args = parse_args(argv)
    from bench.stream_report import write_report

    data_dir = args.data_dir or find_data_dir()
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    windows = args.out.with_name(args.out.stem + "_windows.json")
    if args.checks_only:  # the same runs, the fidelity checks (only) measured again
        runs = json.loads(args.out.read_text(encoding="utf-8"))["runs"]
        before = json.loads(windows.read_text(encoding="utf-8"))
        details, started = before["details"], started - before["total_wall_s"]
    for name in [n.strip() for n in args.data.split(",") if n.strip()]:
        if name not in RUNS:
            raise SystemExit(f"unknown run {name!r}: choose from {list(RUNS)}")
        file, teacher = RUNS[name]
        s = load_stream(data_dir / file, teacher, name)
        x, student = _student(s, args)
        if not args.checks_only:
            out = run_one(s, x, args, student)
            runs += out["runs"]
            details[name] = out["details"]
            continue
        checks = _checks(x, s, sim_config(args, student), args)
        details[name]["checks"] = checks
        for r in runs:
            if (r["data"], r["teacher"], r["policy"]) == (name.split("-")[0], teacher, "datashunt"):
                r["repetitions"] = len(checks)
                viol = [a[0] < args.target for a in checks]
                r["fidelity_violation_rate"] = float(np.mean(viol)) if viol else None
    total = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n", encoding="utf-8")
    extra = {"total_wall_s": round(total, 1), "argv": list(argv or []), "details": details}
    windows.write_text(json.dumps(extra, indent=1) + "\n", encoding="utf-8")
    write_report(runs, details, args.out.with_suffix(".md"), args.out.with_suffix(".png"), total)
    print(f"wrote {args.out} and its .md/.png in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
