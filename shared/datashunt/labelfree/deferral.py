"""Deferral scores learned without gold: which inputs the student keeps, which go to the LLM.

Every score is "higher = keep with the student", in ``[0, 1]`` so that the certified δ of
:mod:`datashunt.training.guarantees.certify` applies to it unchanged:

* ``max``: the student's top probability (the shunt's ``C_s``);
* ``margin``: top-1 minus top-2 probability, the rule of Cache & Distil (Ramírez et al., ACL
  Findings 2024; ``handler.py`` of guillemram97/neural-caching, strategy ``"BT"``: call the LLM
  when ``BT = p_(1) - p_(2) < p_strat``);
* ``agree``: a learned estimate of P(the student agrees with the LLM), the library's deferral
  head (:class:`~datashunt.training.guarantees.deferral.BenefitHead` over
  :func:`~datashunt.training.guarantees.deferral.confidence_features`) retrained toward OCL's
  target,
  disagreement with the LLM, instead of the LLM's benefit against gold (:class:`AgreementHead`).

:class:`OCLHead` reproduces Online Cascade Learning's deferral rule (Nie et al., ICML 2024;
``models/wrapper.py`` and ``cascade/online.py`` of Flitternie/online_cascade_learning): an MLP
``k -> 128 -> ReLU -> 1 -> sigmoid`` over the student's class probabilities, trained online with
Adam (lr 7e-4) on the mean squared error to ``min(1[student != LLM] + calibration, 1)`` plus an
L2 penalty (1e-4), and the input goes to the LLM when its output is above 0.5; after ``u``
student updates, a kept input still goes to the LLM with probability ``decay ** u``
(``decaying_factor`` 0.8, ``calibration`` 0.15: the configuration of its LR student on ISEAR).
The cost term ``mu`` that OCL also back-propagates into the decision is not reproduced: the
benchmark sets the calls by the threshold instead, at equal total calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..training.guarantees.deferral import BenefitHead, confidence_features
from .student import FloatArray

__all__ = [
    "SCORES",
    "AgreementHead",
    "OCLHead",
    "kept_share",
    "margin_score",
    "max_score",
]


def max_score(probs: Any) -> FloatArray:
    """The top probability per row."""
    return np.asarray(np.asarray(probs, dtype=np.float64).max(axis=1), dtype=np.float64)


def margin_score(probs: Any) -> FloatArray:
    """Top-1 minus top-2 probability per row (Cache & Distil's "breaking ties" margin)."""
    s = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    return np.asarray(s[:, -1] - s[:, -2], dtype=np.float64)


def kept_share(score: Any, agree: Any, target: float) -> float:
    """The largest share of inputs, highest ``score`` first, whose agreement is >= ``target``."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    running = np.cumsum(np.asarray(agree)[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(running >= target)[0]
    return float((ok.max() + 1) / len(order)) if len(ok) else 0.0


#: The scores that need no training, by name.
SCORES: Mapping[str, Callable[[Any], FloatArray]] = {"max": max_score, "margin": margin_score}


@dataclass
class AgreementHead:
    """P(the student agrees with the LLM), from the student's probabilities.

    A :class:`~datashunt.training.guarantees.deferral.BenefitHead` whose "LLM right" is always 1
    and whose
    "gate right" is agreement with the LLM: its benefit classes are then {0: agree, 1: disagree}
    and ``1 + head.score`` is the probability of agreeing. Fit it on probabilities the student
    gave *before* it learnt those answers (prequential, or out-of-fold): on its own training
    answers the student is over-confident.

    Example:
        >>> head = AgreementHead().fit(probs_before, student_labels, llm_labels)  # doctest: +SKIP
        >>> keep = head.score(probs_now)  # doctest: +SKIP
    """

    c: float = 0.1
    head: BenefitHead | None = None
    constant: float | None = None

    def fit(self, probs: Any, llm_y: Any) -> AgreementHead:
        """Learn agreement of ``argmax(probs)`` with ``llm_y`` (label indices)."""
        p = np.asarray(probs, dtype=np.float64)
        agree = p.argmax(axis=1) == np.asarray(llm_y)
        if agree.all() or not agree.any():  # one class: the head would have nothing to learn
            self.head, self.constant = None, float(agree.mean())
            return self
        self.head = BenefitHead(c=self.c).fit(
            confidence_features(p), agree, np.ones(len(p), dtype=bool)
        )
        self.constant = None
        return self

    def score(self, probs: Any) -> FloatArray:
        """P(agree) per row, in ``[0, 1]``.

        Raises:
            ConfigError: not fitted.
        """
        p = np.asarray(probs, dtype=np.float64)
        if self.constant is not None:
            return np.full(len(p), self.constant)
        if self.head is None:
            raise ConfigError("fit the agreement head on LLM answers first")
        return np.clip(1.0 + self.head.score(confidence_features(p)), 0.0, 1.0)


@dataclass
class OCLHead:
    """Online Cascade Learning's deferral MLP and rule (see the module docstring).

    Args:
        k: number of labels.
        calibration: added to the disagreement target (OCL's ``wrapper.calibration``).
        decay: the exploration probability after ``u`` updates is ``decay ** u``.
        lr / l2 / hidden / batch: Adam's step, the L2 weight, the hidden width, items per step
            (OCL's LR student retrains every ``cache_size`` = 8 answers).
        seed: torch's seed for the initial weights.
    """

    k: int
    calibration: float = 0.15
    decay: float = 0.8
    lr: float = 7e-4
    l2: float = 1e-4
    hidden: int = 128
    batch: int = 8
    seed: int = 0
    _net: Any = field(default=None, repr=False)
    _opt: Any = field(default=None, repr=False)

    def _build(self) -> None:
        from ..gates._deps import require

        torch = require("torch")
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(self.seed)
            self._net = torch.nn.Sequential(
                torch.nn.Linear(self.k, self.hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(self.hidden, 1),
                torch.nn.Sigmoid(),
            ).double()
        self._opt = torch.optim.Adam(self._net.parameters(), lr=self.lr)

    def partial_fit(self, probs: Any, llm_y: Any) -> OCLHead:
        """One online pass over new answers, in arrival order (``batch`` items per step)."""
        import torch

        if self._net is None:
            self._build()
        p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
        dis = (p.argmax(dim=1) != torch.as_tensor(np.asarray(llm_y))).double()
        target = torch.clamp(dis + self.calibration, max=1.0)
        for i in range(0, len(p), self.batch):
            out = self._net(p[i : i + self.batch]).squeeze(1)
            loss = torch.mean((out - target[i : i + self.batch]) ** 2)
            loss = loss + self.l2 * sum((w**2).sum() for w in self._net.parameters())
            self._opt.zero_grad()
            loss.backward()
            self._opt.step()
        return self

    def defer_probability(self, probs: Any) -> FloatArray:
        """The MLP's output: OCL sends the input on to the LLM when it is above 0.5."""
        import torch

        if self._net is None:
            self._build()
        with torch.no_grad():
            out = self._net(torch.as_tensor(np.asarray(probs, dtype=np.float64)))
        return np.asarray(out.squeeze(1).numpy(), dtype=np.float64)

    def score(self, probs: Any) -> FloatArray:
        """``1 - defer_probability``: higher = keep (OCL keeps above 0.5)."""
        return 1.0 - self.defer_probability(probs)

    def explore_probability(self, updates: int) -> float:
        """OCL's probability that a kept input still goes to the LLM after ``updates``."""
        return float(self.decay**updates)
