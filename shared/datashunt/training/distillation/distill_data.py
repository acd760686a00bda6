"""What the call store can teach the gate: usable logged inputs, and the two stages' data.

2CD (Data Shunt, AAAI-24) learns from two sets. *Stage 1*: inputs the production gate F_s1 was
unsure of (``C_s1 < δ``) whose logged LLM answer was confident (``C_l > δ_l``); the target is
the LLM's distribution over the labels. *Stage 2*: inputs F_s1 is sure of (``C_s1 >= δ``); the
target is F_s1's own temperature-scaled distribution, so the learnable copy keeps what it knew.

Everything here is pure (NumPy, no torch): the confidences come in as F_s1's logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import DataError, StoreError
from ...gates import FloatArray, softmax
from ...store import CallRecord, CallStore

__all__ = [
    "LoggedInput",
    "Method",
    "SelectionCounts",
    "StageData",
    "StoreCounts",
    "open_existing_store",
    "read_logged",
    "select_stages",
]

Method = Literal["2cd", "stage1", "finetune"]


@dataclass(frozen=True)
class LoggedInput:
    """One distinct logged input and, when the LLM answered it usably, that answer.

    Attributes:
        text: the input.
        llm_label: the LLM's parsed label, or ``None`` for a gate-only record.
        llm_probs: the LLM's distribution over the gate's labels (gate order), from logprobs;
            ``None`` when no logprobs were recorded.
    """

    text: str
    llm_label: str | None = None
    llm_probs: tuple[float, ...] | None = None

    @property
    def llm_confidence(self) -> float | None:
        """``C_l``: the LLM's probability of its own answer."""
        if self.llm_probs is None or self.llm_label is None:
            return None
        return max(self.llm_probs)


@dataclass(frozen=True)
class StoreCounts:
    """What was read from the store and what was skipped, and why."""

    records: int
    inputs: int
    llm_answers: int
    llm_errors: int
    unparsed: int
    no_text: int
    no_llm_confidence: int
    duplicates: int


@dataclass(frozen=True)
class SelectionCounts:
    """How the logged inputs (and the training data) were split between the stages."""

    threshold: float
    llm_min_confidence: float
    stage1_temperature: float
    stage2_temperature: float
    confident_logged: int
    stage1: int
    stage2_logged: int
    stage2_train: int
    low_llm_confidence: int
    unscored_skipped: int
    uncertain_without_answer: int
    train_uncertain: int


@dataclass(frozen=True)
class StageData:
    """Inputs and target distributions of one stage (targets row-normalised, gate order)."""

    texts: tuple[str, ...]
    targets: FloatArray
    temperature: float

    def __len__(self) -> int:
        return len(self.texts)

    def sample(self, n: int | None, rng: np.random.Generator) -> StageData:
        """At most ``n`` rows drawn without replacement (all of them when ``n`` is None)."""
        if n is None or n >= len(self.texts):
            return self
        idx = np.sort(rng.choice(len(self.texts), size=n, replace=False))
        return StageData(tuple(self.texts[i] for i in idx), self.targets[idx], self.temperature)


def open_existing_store(store: CallStore | str | Path) -> CallStore:
    """Open a store that must already exist, read-only (a missing SQLite path is an error).

    Raises:
        StoreError: the SQLite file does not exist, or the store cannot be opened.
    """
    if isinstance(store, CallStore):
        return store
    s = str(store)
    if "://" not in s and not Path(s).expanduser().is_file():
        raise StoreError(
            f"no call store at {s}: point --store at the SQLite file (or SQLAlchemy URL) a shunt "
            "wrote with store=..., e.g. Shunt(..., store='runs/calls.sqlite')"
        )
    return CallStore(s, read_only=True)


def _label_vector(
    probs: Mapping[str, float], labels: Sequence[str], bad: set[str]
) -> tuple[float, ...] | None:
    bad.update(set(probs) - set(labels))
    vec = np.array([max(float(probs.get(lab, 0.0)), 0.0) for lab in labels])
    total = vec.sum()
    return tuple(float(v) for v in vec / total) if total > 0 and np.isfinite(total) else None


def read_logged(
    records: Iterable[CallRecord], labels: Sequence[str]
) -> tuple[list[LoggedInput], StoreCounts]:
    """Distinct usable inputs from store records, and the counts of what was skipped.

    Records without an input text (a store written with ``store_inputs="hash"``), failed LLM
    calls and unparsed answers are skipped. When an input was logged more than once, its latest
    LLM answer wins, else its latest record. The inputs come back sorted by text, so that the
    same records give the same distillation whatever order concurrent calls finished in.

    Raises:
        DataError: the store holds labels the gate does not know, or no records at all.
    """
    n = errors = unparsed = no_text = unscored = answers = 0
    bad: set[str] = set()
    by_text: dict[str, LoggedInput] = {}
    for rec in records:
        n += 1
        bad.update(set(rec.gate_probs or {}) - set(labels))
        if not rec.input_text:
            no_text += 1
            continue
        if rec.route != "llm":
            prev = by_text.get(rec.input_text)
            if prev is None or prev.llm_label is None:
                by_text[rec.input_text] = LoggedInput(rec.input_text)
            continue
        if rec.error is not None:
            errors += 1
            continue
        if not rec.parse_ok or rec.parsed_label is None:
            unparsed += 1
            continue
        if rec.parsed_label not in labels:
            bad.add(rec.parsed_label)
            continue
        vec = _label_vector(rec.llm_probs, labels, bad) if rec.llm_probs else None
        if vec is None or rec.llm_confidence is None:
            unscored += 1
            vec = None
        answers += 1
        by_text[rec.input_text] = LoggedInput(rec.input_text, rec.parsed_label, vec)
    if bad:
        raise DataError(
            f"the store holds labels {sorted(bad)} that the gate does not know (gate labels "
            f"{list(labels)}): distil into a gate trained on the same label set as the shunt "
            "that wrote the store"
        )
    if n == 0:
        raise DataError("the store holds no records: run the shunt with a store attached first")
    # in text order, not the store's: records are listed as their calls finished, an order
    # that concurrent calls change from run to run (and the seeded shuffles with it)
    used = [by_text[t] for t in sorted(by_text)]
    skipped = errors + unparsed + no_text
    counts = StoreCounts(
        records=n,
        inputs=len(used),
        llm_answers=sum(r.llm_label is not None for r in used),
        llm_errors=errors,
        unparsed=unparsed,
        no_text=no_text,
        no_llm_confidence=unscored,
        duplicates=n - skipped - len(used),
    )
    return used, counts


def _confidence(logits: FloatArray, temperature: float) -> FloatArray:
    out: FloatArray = softmax(logits, temperature).max(axis=1) if len(logits) else np.zeros(0)
    return out


def select_stages(
    logged: Sequence[LoggedInput],
    teacher_logits: Callable[[Sequence[str]], FloatArray],
    *,
    labels: Sequence[str],
    method: Method,
    threshold: float,
    policy_temperature: float,
    distill_temperature: float,
    llm_min_confidence: float,
    trust_unscored: bool,
    train_texts: Sequence[str] = (),
) -> tuple[StageData, StageData, SelectionCounts]:
    """Split logged inputs (and training texts) into the stage-1 and stage-2 sets.

    Args:
        logged: the usable logged inputs (:func:`read_logged`).
        teacher_logits: F_s1's raw logits for a list of texts.
        labels: the gate's labels.
        method: ``"2cd"`` and ``"stage1"`` learn the LLM's distribution; ``"finetune"`` learns
            its parsed label (one-hot; the loss is then plain cross-entropy).
        threshold: δ; ``C_s1`` is F_s1's maximum probability at ``policy_temperature``.
        policy_temperature: the production gate's calibrated temperature τ: stage 1 compares
            the learnable gate's ``softmax(z / τ)`` (its ``C_s`` scale) with the LLM's
            distribution ("finetune" uses plain cross-entropy, T = 1).
        distill_temperature: T of stage 2: F_s1's ``softmax(z_s1 / T)`` is the target.
        llm_min_confidence: δ_l; a stage-1 answer needs ``C_l > δ_l``.
        trust_unscored: use answers without ``C_l`` (no logprobs) as one-hot targets.
        train_texts: the gate's original training inputs, for stage 2.

    Returns:
        ``(stage1, stage2, counts)``; stage 2 is empty for ``"stage1"`` and ``"finetune"``.
    """
    k = len(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    texts = [r.text for r in logged]
    conf = _confidence(teacher_logits(texts), policy_temperature) if texts else np.zeros(0)
    s1_texts: list[str] = []
    s1_targets: list[FloatArray] = []
    s2_texts: list[str] = []
    low = unscored = uncertain_bare = 0
    for rec, c in zip(logged, conf, strict=True):
        if c >= threshold:
            s2_texts.append(rec.text)
            continue
        if rec.llm_label is None:
            uncertain_bare += 1
            continue
        c_l = rec.llm_confidence
        if c_l is None and not trust_unscored:
            unscored += 1
            continue
        if c_l is not None and not c_l > llm_min_confidence:
            low += 1
            continue
        one_hot = np.eye(k)[index[rec.llm_label]]
        soft = method != "finetune" and rec.llm_probs is not None
        s1_texts.append(rec.text)
        s1_targets.append(np.asarray(rec.llm_probs, dtype=np.float64) if soft else one_hot)
    n_logged2 = len(s2_texts)
    train_uncertain = 0
    seen = set(texts)
    extra = [t for t in dict.fromkeys(train_texts) if t not in seen]
    if extra and method == "2cd":
        t_conf = _confidence(teacher_logits(extra), policy_temperature)
        confident = [t for t, c in zip(extra, t_conf, strict=True) if c >= threshold]
        train_uncertain = len(extra) - len(confident)
        s2_texts.extend(confident)
    # One-hot targets (answers without logprobs) carry no scale to match at τ, and at a small τ
    # the gate's confident inputs would give no gradient and its mistakes all of it: they are
    # learnt with plain cross-entropy (T = 1), as in "finetune". Soft targets keep τ.
    any_soft = any(t.max() < 1.0 for t in s1_targets)
    t1 = 1.0 if method == "finetune" or not any_soft else policy_temperature
    counts = SelectionCounts(
        threshold=threshold,
        llm_min_confidence=llm_min_confidence,
        stage1_temperature=t1,
        stage2_temperature=distill_temperature,
        confident_logged=n_logged2,
        stage1=len(s1_texts),
        stage2_logged=n_logged2 if method == "2cd" else 0,
        stage2_train=len(s2_texts) - n_logged2 if method == "2cd" else 0,
        low_llm_confidence=low,
        unscored_skipped=unscored,
        uncertain_without_answer=uncertain_bare,
        train_uncertain=train_uncertain,
    )
    stage1 = StageData(tuple(s1_texts), np.array(s1_targets).reshape(-1, k), t1)
    if method != "2cd" or not s2_texts:
        stage2 = StageData((), np.zeros((0, k)), distill_temperature)
    else:
        stage2 = StageData(
            tuple(s2_texts),
            softmax(teacher_logits(s2_texts), distill_temperature),
            distill_temperature,
        )
    return stage1, stage2, counts
