"""Start with no labels: a student learned from the LLM's answers, certified for fidelity.

``datashunt bootstrap`` and the stream benchmark (``bench/stream.py``) are built from these:

* :class:`EmbeddingStudent` — a softmax head on frozen MiniLM embeddings, fitted on the LLM's
  readable answers only (:func:`usable_answers`), warm-started from the previous round;
* :func:`certify_fidelity` — δ such that the small route agrees with the LLM at least ``target``
  of the time, with ``confidence`` (Learn then Test on held-out answers);
  :func:`spent_confidence` splits it over a run's repeated certificates;
* :class:`AgreementHead`, :func:`max_score`, :func:`margin_score`, :class:`OCLHead` — deferral
  scores learned or read without gold;
* :class:`Exploration` — the decaying share of confident inputs still sent to the LLM;
* :func:`train_round` — one round: fit, choose the score, certify.
"""

from .deferral import SCORES, AgreementHead, OCLHead, margin_score, max_score
from .fidelity import (
    Exploration,
    FidelityCertificate,
    answers_to_collect,
    certify_fidelity,
    holdout_mask,
    spent_confidence,
)
from .rounds import Round, RoundConfig, train_round
from .student import EmbeddingStudent, fit_softmax_head, usable_answers

__all__ = [
    "SCORES",
    "AgreementHead",
    "EmbeddingStudent",
    "Exploration",
    "FidelityCertificate",
    "OCLHead",
    "Round",
    "RoundConfig",
    "answers_to_collect",
    "certify_fidelity",
    "fit_softmax_head",
    "holdout_mask",
    "margin_score",
    "max_score",
    "spent_confidence",
    "train_round",
    "usable_answers",
]
