"""One learning round from LLM answers only: fit the student, choose the deferral score, certify.

The round is what ``datashunt bootstrap`` runs once and what a shadowing / serving shunt runs
each time enough new answers have arrived (``bench/stream.py`` runs it along a whole stream):

1. the student (:class:`~.student.EmbeddingStudent`) is fitted on the training answers,
   continuing from the previous round's head;
2. the :class:`~.deferral.AgreementHead` is fitted on out-of-fold probabilities of the training
   answers (K folds of the same student), so it learns how often an honest student agrees;
3. every deferral score is computed on the held-out answers and the fidelity target is certified
   (:func:`~.fidelity.certify_fidelity`: the best certified score, Bonferroni over scores).

Nothing here reads a gold label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..training.guarantees.deferral import stratified_folds
from .deferral import SCORES, AgreementHead, kept_share
from .fidelity import FidelityCertificate, certify_fidelity
from .student import EmbeddingStudent, FloatArray

__all__ = ["Round", "RoundConfig", "train_round"]

#: Fewest prequential probabilities the agreement head is fitted on (else out-of-fold).
MIN_HEAD_ANSWERS = 200


@dataclass(frozen=True)
class RoundConfig:
    """What a round fits and certifies.

    Attributes:
        target: fidelity floor (agreement with the LLM on the small route).
        confidence: the certificate's confidence.
        scores: deferral scores offered: ``max``, ``margin``, ``agree`` (learned).
        l2: the student head's L2 penalty.
        replay: newer answers' extra weight (:class:`~.student.EmbeddingStudent`).
        folds: out-of-fold folds for the agreement head.
        holdout: the share of uniform answers held out for certification.
        estimate_needed: when nothing certifies, estimate how many more answers would.
        choose: ``holdout``: every score is certified (Bonferroni over them) and the one that
            keeps the most is used; ``train``: one score is picked on the training answers'
            earlier probabilities (prequential or out-of-fold: the most kept at ``target``,
            the agreement head fitted on the other half) and certified alone, at the full
            confidence; ``max`` when there are none.
    """

    target: float = 0.95
    confidence: float = 0.95
    scores: tuple[str, ...] = ("max", "margin", "agree")
    l2: float = 1e-3
    replay: float = 0.0
    folds: int = 5
    holdout: float = 0.3
    estimate_needed: bool = True
    choose: str = "holdout"

    def __post_init__(self) -> None:
        unknown = [s for s in self.scores if s not in (*SCORES, "agree")]
        if not self.scores or unknown:
            raise ConfigError(
                f"unknown deferral score(s) {unknown or '(none given)'}: choose from "
                f"{[*SCORES, 'agree']}"
            )
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.choose not in ("holdout", "train"):
            raise ConfigError(f"choose must be 'holdout' or 'train', got {self.choose!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")


@dataclass
class Round:
    """A fitted student, its deferral score and its certificate.

    Example:
        >>> r = train_round(x_tr, y_tr, x_ho, y_ho, labels, RoundConfig())  # doctest: +SKIP
        >>> keep = r.keep(x_new)  # True: the student answers alone  # doctest: +SKIP
    """

    student: Any  # an EmbeddingStudent, or a TunedStudent
    certificate: FidelityCertificate
    head: AgreementHead | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def score(self, x: Any, probs: FloatArray | None = None) -> FloatArray:
        """The chosen deferral score of each input (higher = keep)."""
        p = self.student.predict_proba(x) if probs is None else probs
        return score_of(self.certificate.score, p, self.head)

    def keep(self, x: Any, probs: FloatArray | None = None) -> np.ndarray[Any, Any]:
        """Whether the student answers each input alone (always False when not certified)."""
        s = self.score(x, probs)
        return np.asarray(s >= self.certificate.threshold) & self.certificate.certified


def score_of(name: str, probs: FloatArray, head: AgreementHead | None) -> FloatArray:
    """Score ``name`` of ``probs``; ``agree`` needs the fitted head."""
    if name == "agree":
        if head is None:
            raise ConfigError("the 'agree' score needs a fitted AgreementHead")
        return head.score(probs)
    return SCORES[name](probs)


def choose_score(names: list[str], before: tuple[FloatArray, Any] | None, target: float) -> str:
    """The score that keeps the most of the answers' earlier probabilities at ``target``
    agreement (most confident first); ``agree`` is fitted on the even rows and every score is
    judged on the odd ones. The first name when there is nothing to judge on."""
    if before is None or len(before[1]) < 2:
        return names[0]
    probs, y = before
    fit, judge = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    head = AgreementHead().fit(probs[fit], y[fit]) if "agree" in names else None
    agree = probs[judge].argmax(axis=1) == y[judge]
    return max(names, key=lambda n: kept_share(score_of(n, probs[judge], head), agree, target))


def out_of_fold_probs(
    student: EmbeddingStudent, x: FloatArray, y: np.ndarray[Any, Any], folds: int, seed: int = 0
) -> FloatArray:
    """Each training answer's probabilities from a student fitted on the other folds (each
    fold's student warm-starts from ``student``'s head: a few iterations each)."""
    out = np.zeros((len(y), len(student.labels)))
    idx = np.arange(len(y))
    for fold in stratified_folds(y, folds, seed):
        rest = np.setdiff1d(idx, fold)
        if len(np.unique(y[rest])) < 2:
            out[fold] = student.predict_proba(x[fold])
            continue
        s = EmbeddingStudent(student.labels, l2=student.l2, replay=student.replay)
        s.weight, s.bias = student.weight, student.bias
        out[fold] = s.fit_indices(x[rest], y[rest]).predict_proba(x[fold])
    return out


def train_round(
    x_train: Any,
    y_train: Any,
    x_holdout: Any,
    y_holdout: Any,
    labels: Sequence[str],
    config: RoundConfig,
    *,
    previous: Any = None,
    head_probs: Any = None,
    seed: int = 0,
    new_student: Any = None,
) -> Round:
    """Fit, choose and certify (see the module docstring).

    Args:
        x_train, y_train: embeddings and LLM label indices of the training answers, oldest
            first (readable answers only).
        x_holdout, y_holdout: the same for the held-out answers (a uniform random part of the
            traffic, never trained on).
        labels: the label names.
        previous: the last round's student: its weights are the starting point (another
            kind than :class:`~.student.EmbeddingStudent` continues by its ``successor()``).
        new_student: the unfitted student of the first round when it is not an
            :class:`~.student.EmbeddingStudent` (a :class:`~.tuned.TunedStudent`, which takes
            row indices for ``x``). Such a student's ``agree`` score is fitted on prequential
            probabilities only (no out-of-fold refits); with too few, ``agree`` is not offered.
        head_probs: probabilities the students of earlier rounds gave each training answer
            before learning it (prequential, as OCL learns its head); ``None``: out-of-fold
            probabilities of this round's student (``folds`` more fits). Rows of NaN (answered
            before any student existed) are skipped.

    Raises:
        DataError: fewer than two distinct labels among the training answers.
    """
    yt = np.asarray(y_train, dtype=np.int64)
    student: Any
    if previous is not None and not isinstance(previous, EmbeddingStudent):
        student = previous.successor(seed=seed)
    elif new_student is not None:
        student = new_student
    else:
        student = EmbeddingStudent(tuple(labels), l2=config.l2, replay=config.replay)
        if previous is not None and previous.weight is not None:
            student.weight, student.bias = previous.weight, previous.bias
    embedding = isinstance(student, EmbeddingStudent)
    xt = np.asarray(x_train, dtype=np.float64) if embedding else np.asarray(x_train)
    student.fit_indices(xt, yt)
    head = None
    names = list(config.scores)
    hp = None if head_probs is None else np.asarray(head_probs, dtype=np.float64)
    known = np.zeros(len(yt), dtype=bool) if hp is None else np.isfinite(hp).all(axis=1)
    before: tuple[FloatArray, Any] | None = None  # earlier probabilities of training answers
    if known.sum() >= MIN_HEAD_ANSWERS:  # rows answered before any student: NaN, skipped
        before = (hp[known], yt[known])  # type: ignore[index]
    elif embedding and "agree" in names:
        folds = min(config.folds, max(2, len(yt) // 10))
        before = (out_of_fold_probs(student, xt, yt, folds, seed), yt)
    if "agree" in names:
        if before is not None:
            head = AgreementHead().fit(*before)
        else:  # a fine-tuned student: out-of-fold would mean `folds` more fine-tunes
            names.remove("agree")
    xh = np.asarray(x_holdout, dtype=np.float64) if embedding else np.asarray(x_holdout)
    yh = np.asarray(y_holdout, dtype=np.int64)
    probs = student.predict_proba(xh) if len(yh) else np.zeros((0, len(labels)))
    agree = probs.argmax(axis=1) == yh
    if len(labels) == 2 and "max" in names and "margin" in names:
        names.remove("margin")  # with two labels margin = 2 max - 1: the same δ, half the α
    if config.choose == "train" and len(names) > 1:
        names = [choose_score(names, before, config.target)]
    scores = {name: score_of(name, probs, head) for name in names}
    cert = certify_fidelity(
        scores,
        agree,
        target=config.target,
        confidence=config.confidence,
        estimate_needed=config.estimate_needed,
    )
    return Round(student, cert, head, {"holdout_agreement": float(agree.mean()) if len(yh) else 0})
