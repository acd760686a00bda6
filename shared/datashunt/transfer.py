"""Prompt Transferring (DS+): the gate shortens a long input before the LLM sees it.

The input is split into sentences; the gate scores each one alone, and the most decisive
sentences (highest gate confidence) are kept, in their original order, within a token budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .gates import Gate

__all__ = ["PromptTransfer", "TransferResult", "split_sentences", "approx_tokens"]

_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation and line breaks; empty pieces are dropped."""
    return [s.strip() for s in _SENT.split(text) if s and s.strip()]


def approx_tokens(text: str) -> int:
    """A tokenizer-free token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class TransferResult:
    """A shortened input and what it saved."""

    text: str
    kept: tuple[int, ...]
    n_sentences: int
    tokens_before: int
    tokens_after: int

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def changed(self) -> bool:
        return self.tokens_after < self.tokens_before


class PromptTransfer:
    """Keep the sentences the gate finds most decisive within ``budget`` tokens.

    Args:
        gate: scores each sentence (its max probability on the sentence alone).
        budget: maximum tokens of the kept text.
        count_tokens: token counter; default the gate's ``count_tokens`` if it has one, else
            :func:`approx_tokens`.

    Example:
        >>> transfer = PromptTransfer(gate, budget=128)  # doctest: +SKIP
        >>> transfer.apply([long_review])[0].tokens_saved  # doctest: +SKIP
    """

    def __init__(
        self, gate: Gate, budget: int = 256, count_tokens: Callable[[str], int] | None = None
    ) -> None:
        if budget < 1:
            raise ConfigError(f"budget must be >= 1 token, got {budget}")
        self.gate = gate
        self.budget = budget
        self.count_tokens: Callable[[str], int] = (
            count_tokens or getattr(gate, "count_tokens", None) or approx_tokens
        )

    def apply(self, texts: Sequence[str]) -> list[TransferResult]:
        """Shorten each text that is over budget; one gate pass scores every sentence."""
        splits = [split_sentences(t) for t in texts]
        counts = [self.count_tokens(t) for t in texts]
        todo = [i for i, c in enumerate(counts) if c > self.budget and len(splits[i]) > 1]
        flat = [s for i in todo for s in splits[i]]
        scores = self.gate.predict_proba(flat).max(axis=1) if flat else np.zeros(0)
        results = [
            TransferResult(t, tuple(range(len(splits[i]))), len(splits[i]), counts[i], counts[i])
            for i, t in enumerate(texts)
        ]
        pos = 0
        for i in todo:
            sents = splits[i]
            s_scores = scores[pos : pos + len(sents)]
            pos += len(sents)
            results[i] = self._select(sents, s_scores, counts[i])
        return results

    def _select(self, sents: list[str], scores: np.ndarray, before: int) -> TransferResult:
        lengths = [self.count_tokens(s) for s in sents]
        kept: list[int] = []
        used = 0
        for j in np.argsort(-scores, kind="stable"):
            if used + lengths[j] <= self.budget:
                kept.append(int(j))
                used += lengths[j]
        if not kept:  # every sentence alone is over budget: keep the best one, cut to budget
            best = int(np.argmax(scores))
            words = sents[best].split()
            cut = " ".join(words[: max(1, self.budget * 3 // 4)])
            return TransferResult(cut, (best,), len(sents), before, self.count_tokens(cut))
        kept.sort()
        text = " ".join(sents[j] for j in kept)
        return TransferResult(text, tuple(kept), len(sents), before, self.count_tokens(text))
