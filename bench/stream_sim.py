"""The stream policies of ``bench/stream.py``: one pass over a stream, no gold label read.

Every policy sees, per input, its embedding and, only when it asks, the LLM's recorded parsed
answer (``-1`` = unreadable). It returns what it answered and where; ``bench/stream.py`` scores
that against gold afterwards. The student, its schedule (a round every ``every`` new readable
answers) and the fallback (an unreadable answer is replaced by the current student's label) are
shared by every policy; only the routing rule differs:

* ``datashunt``: :func:`datashunt.labelfree.train_round` each round (student, deferral score
  chosen on held-out answers, certified fidelity δ); a challenger replaces the champion only
  when it keeps more of the same held-out answers at the same certified target. After takeover
  a decaying share of inputs (:class:`~datashunt.labelfree.Exploration`) still goes to the
  LLM, drawn uniformly: the audits; ``audit_holdout`` of them are held out for the later
  certificates, the rest train the student with the answers to deferred inputs;
* ``margin``: Cache & Distil's rule, the LLM when the margin is below ``param``;
* ``ocl``: OCL's MLP rule (:class:`~datashunt.labelfree.OCLHead`), the LLM when its output is
  above ``param``, or with probability ``0.8 ** updates``;
* ``llm``: every input to the LLM (the student only stands in for unreadable answers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from datashunt.labelfree import (
    EmbeddingStudent,
    Exploration,
    OCLHead,
    Round,
    RoundConfig,
    certify_fidelity,
    margin_score,
    spent_confidence,
    train_round,
)
from datashunt.labelfree.rounds import score_of

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True)
class SimConfig:
    """The shared schedule and the datashunt policy's settings.

    Attributes:
        every: a round after this many new readable answers...
        growth: ...or after ``growth`` times the answers held so far, if that is more (0: a
            fixed schedule; a fine-tuned student's rounds cost seconds, not milliseconds).
        student: makes the first, unfitted student for ``labels`` (``None``: an
            :class:`EmbeddingStudent`, with ``x`` the embeddings; a tuned student takes rows).
        audit_holdout: the share of audits (after takeover) held out for certification; the
            shadow phase's answers are held out at ``round.holdout``.
        spend: round ``k`` certifies at :func:`~datashunt.labelfree.spent_confidence` (all of
            a run's certificates, drawn on one reused held-out set, hold together).
    """

    every: int = 250
    round: RoundConfig = field(default_factory=RoundConfig)
    exploration: Exploration = field(default_factory=Exploration)
    seed: int = 0
    growth: float = 0.0
    student: Callable[[tuple[str, ...]], Any] | None = None
    audit_holdout: float = 0.3
    spend: bool = False

    def new_student(self, labels: tuple[str, ...]) -> Any:
        if self.student is None:
            return EmbeddingStudent(labels, l2=self.round.l2)
        return self.student(labels)

    def due(self, mem: _Memory) -> bool:
        """Whether enough new answers arrived for a round."""
        return mem.new >= max(self.every, self.growth * len(mem.rows))


@dataclass
class Trace:
    """What a policy did along the stream (positions in stream order).

    Attributes:
        pred: the label index answered, ``-1`` for no label.
        asked: whether the LLM was asked.
        kept: whether the student answered alone.
        promotions: ``(position, round)`` of each gate taken into service (datashunt).
        rounds: the number of student refits.
        held: the answers held out for certification by the end (datashunt).
    """

    pred: IntArray
    asked: BoolArray
    kept: BoolArray
    promotions: list[tuple[int, Round]] = field(default_factory=list)
    rounds: int = 0
    held: int = 0


class _Memory:
    """The answers seen so far and which of them are held out (never trained on)."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.y: list[int] = []
        self.held: list[bool] = []
        self.new = 0

    def add(self, row: int, answer: int, held: bool) -> None:
        if answer < 0:
            return
        self.rows.append(row)
        self.y.append(answer)
        self.held.append(held)
        self.new += 1

    def part(self, held: bool) -> tuple[IntArray, IntArray]:
        m = np.asarray(self.held, dtype=bool) == held
        return np.asarray(self.rows, dtype=np.int64)[m], np.asarray(self.y, dtype=np.int64)[m]


def _fit(student: Any, x: FloatArray, mem: _Memory) -> bool:
    rows, y = mem.part(False)
    if len(np.unique(y)) < 2:
        return False
    student.fit_indices(x[rows], y)
    return True


def run_policy(
    policy: str,
    x: FloatArray,
    answers: IntArray,
    labels: tuple[str, ...],
    config: SimConfig,
    param: float = 0.5,
) -> Trace:
    """Run ``policy`` over the stream ``x`` (already in stream order).

    Args:
        policy: ``datashunt``, ``margin``, ``ocl`` or ``llm``.
        x: ``(n, d)`` embeddings in stream order.
        answers: the LLM's recorded label index per input, ``-1`` when unreadable: read only
            where the policy asks.
        param: ``margin``'s margin threshold or ``ocl``'s output threshold.
    """
    if policy == "datashunt":
        return _datashunt(x, answers, labels, config)
    n, k = len(x), len(labels)
    rng = np.random.default_rng(config.seed)
    pred = np.full(n, -1, dtype=np.int64)
    asked = np.zeros(n, dtype=bool)
    student = config.new_student(labels)
    ocl = OCLHead(k, seed=config.seed)
    mem, probs, rounds = _Memory(), np.zeros((n, k)), 0
    defer = np.ones(n)  # ocl: its MLP's output for the inputs still to come
    fresh = 0  # ocl: defer[t] is current for t < fresh
    pending: list[int] = []  # ocl: answered positions not yet learnt by its MLP
    for t in range(n):
        if not student.fitted or policy == "llm":
            ask = True
        elif policy == "margin":
            ask = bool(margin_score(probs[t : t + 1])[0] < param)
        else:
            if t >= fresh:  # the MLP changed since: its output for the next few inputs
                fresh = min(n, t + 64)
                defer[t:fresh] = ocl.defer_probability(probs[t:fresh])
            ask = bool(defer[t] > param or rng.random() < ocl.explore_probability(rounds))
        asked[t] = ask
        if ask:
            a = int(answers[t])
            mem.add(t, a, held=False)
            if policy == "ocl" and a >= 0 and student.fitted:
                pending.append(t)
            pred[t] = a if a >= 0 else (int(probs[t].argmax()) if student.fitted else -1)
        else:
            pred[t] = int(probs[t].argmax())
        refit = config.due(mem) and _fit(student, x, mem)
        if refit:
            mem.new, rounds = 0, rounds + 1
            probs[t + 1 :] = student.predict_proba(x[t + 1 :])
        if policy == "ocl" and (len(pending) >= ocl.batch or refit):
            if pending:  # probs[t] is still what the student said before the answer came
                ocl.partial_fit(probs[pending], answers[pending])
                pending = []
            fresh = t + 1
    return Trace(pred, asked, ~asked, rounds=rounds)


def _datashunt(x: FloatArray, answers: IntArray, labels: tuple[str, ...], cfg: SimConfig) -> Trace:
    n, k = len(x), len(labels)
    rng = np.random.default_rng(cfg.seed)
    pred = np.full(n, -1, dtype=np.int64)
    asked = np.zeros(n, dtype=bool)
    kept = np.zeros(n, dtype=bool)
    mem = _Memory()
    latest: Any = None
    champion: Round | None = None
    probs = np.full((n, k), np.nan)  # the latest student's probabilities (NaN: none yet)
    cprobs = np.zeros((n, k))  # the champion's
    cscore = np.zeros(n)
    trace = Trace(pred, asked, kept)
    since = -1  # inputs since the first takeover
    for t in range(n):
        audit = False
        if champion is not None:
            since += 1
            audit = bool(rng.random() < cfg.exploration.rate(since))
        keep = champion is not None and not audit and cscore[t] >= champion.certificate.threshold
        if keep:
            kept[t] = True
            pred[t] = int(cprobs[t].argmax())
        else:
            asked[t] = True
            a = int(answers[t])
            uniform = champion is None or audit  # drawn regardless of the score
            share = cfg.round.holdout if champion is None else cfg.audit_holdout
            held = uniform and rng.random() < share
            mem.add(t, a, held)
            pred[t] = a if a >= 0 else (int(probs[t].argmax()) if latest is not None else -1)
        if not cfg.due(mem):
            continue
        rows, y = mem.part(False)
        hrows, hy = mem.part(True)
        if len(np.unique(y)) < 2:
            continue
        mem.new = 0
        rc = cfg.round
        if cfg.spend:
            rc = replace(rc, confidence=spent_confidence(rc.confidence, trace.rounds + 1))
        seen = probs[rows] if latest is not None else None  # prequential: before learning
        r = train_round(
            x[rows],
            y,
            x[hrows],
            hy,
            labels,
            rc,
            previous=latest,
            head_probs=seen,
            seed=t,
            new_student=None
            if latest is not None or cfg.student is None
            else cfg.new_student(labels),
        )
        trace.rounds += 1
        latest = r.student
        rest = slice(t + 1, n)
        probs[rest] = latest.predict_proba(x[rest])
        if not r.certificate.certified:
            continue
        if champion is not None and not _better(r, champion, x[hrows], hy, rc):
            continue
        champion = r
        cprobs[rest] = probs[rest]
        cscore[rest] = r.score(x[rest], probs[rest])
        trace.promotions.append((t, r))
    trace.held = int(np.sum(mem.held))
    return trace


def _better(new: Round, old: Round, xh: FloatArray, yh: IntArray, cfg: RoundConfig) -> bool:
    """Whether ``new`` keeps more held-out inputs than ``old`` re-certified on the same ones."""
    p = old.student.predict_proba(xh)
    s = score_of(old.certificate.score, p, old.head)
    again = certify_fidelity(
        {old.certificate.score: s},
        p.argmax(axis=1) == yh,
        target=cfg.target,
        confidence=cfg.confidence,
    )
    return not again.certified or new.certificate.small_share > again.small_share


def repeated_certificates(
    x: FloatArray,
    answers: IntArray,
    labels: tuple[str, ...],
    config: RoundConfig,
    *,
    orders: int,
    splits: int,
    shadow: int,
) -> list[tuple[float, str, float]]:
    """The promise checked over orders x held-out splits: per repetition, the first ``shadow``
    inputs of a random order are the shadow phase's answers, ``config.holdout`` of them held
    out; the round's gate, if it certifies, is measured on every later input it keeps (its
    agreement with the LLM's readable answers). Returns, per certified gate, that agreement,
    the deferral score the round chose and the share of later inputs it kept."""
    out = []
    for order in range(orders):
        perm = np.random.default_rng(1000 + order).permutation(len(x))
        first, rest = perm[:shadow], perm[shadow:]
        first = first[answers[first] >= 0]  # unreadable answers: neither trained on nor tested
        for split in range(splits):
            held = np.random.default_rng(split).random(len(first)) < config.holdout
            tr, ho = first[~held], first[held]
            r = train_round(x[tr], answers[tr], x[ho], answers[ho], labels, config, seed=split)
            later = rest[answers[rest] >= 0]
            keep = r.keep(x[later])
            if keep.any():
                pred = r.student.predict_proba(x[later][keep]).argmax(axis=1)
                agree = float((pred == answers[later][keep]).mean())
                out.append((agree, r.certificate.score, float(keep.mean())))
    return out


def fixed_student_certificates(
    x: Any,
    answers: IntArray,
    labels: tuple[str, ...],
    config: SimConfig,
    *,
    orders: int,
    splits: int,
    shadow: int,
) -> list[tuple[float, str, float]]:
    """:func:`repeated_certificates` for a student too costly to refit per split (fine-tuned).

    Per order, one student is trained on the first ``1 - holdout`` of the shadow phase's
    readable answers. Per split, a held-out set of the size :func:`repeated_certificates` uses
    is drawn from the inputs after those, the fidelity target is certified on it (``max`` and,
    with more than two labels, ``margin``), and the gate is tested on every other later input
    it keeps. The certificate promises its target over the draw of the held-out answers for a
    given student: this is that draw, repeated."""
    out = []
    rc = config.round
    names = ["max", "margin"] if len(labels) > 2 else ["max"]
    for order in range(orders):
        perm = np.random.default_rng(1000 + order).permutation(len(x))
        first = perm[:shadow][answers[perm[:shadow]] >= 0]
        n_train = int(len(first) * (1 - rc.holdout))
        train = first[:n_train]
        student = config.new_student(labels).fit_indices(x[train], answers[train])
        pool = np.concatenate([first[n_train:], perm[shadow:]])
        pool = pool[answers[pool] >= 0]
        probs = student.predict_proba(x[pool])
        agree = probs.argmax(axis=1) == answers[pool]
        for split in range(splits):
            held = np.zeros(len(pool), dtype=bool)
            pick = np.random.default_rng(split).choice(len(pool), len(first) - n_train, False)
            held[pick] = True
            cert = certify_fidelity(
                {s: score_of(s, probs[held], None) for s in names},
                agree[held],
                target=rc.target,
                confidence=rc.confidence,
            )
            if not cert.certified:
                continue
            keep = ~held & (score_of(cert.score, probs, None) >= cert.threshold)
            if keep.any():
                out.append((float(agree[keep].mean()), cert.score, float(keep.mean())))
    return out
