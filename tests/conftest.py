"""Shared fixtures: a tiny random BERT classifier built on disk, fake gates and a fake LLM."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from datashunt import BaseGate, LLMReply, LLMRequest
from datashunt.gates import FloatArray

WORDS = [
    "good",
    "great",
    "excellent",
    "love",
    "wonderful",
    "best",
    "fine",
    "nice",
    "happy",
    "perfect",
    "bad",
    "awful",
    "terrible",
    "hate",
    "worst",
    "poor",
    "broken",
    "boring",
    "sad",
    "waste",
    "the",
    "a",
    "it",
    "is",
    "was",
    "this",
    "product",
    "book",
    "movie",
    "very",
    "not",
    "and",
    "but",
    "of",
    "to",
    "i",
]


def build_tiny_bert(path: Path, labels: Sequence[str] = ("negative", "positive")) -> Path:
    """A random ~100k-parameter BERT sequence classifier with a word-level vocab, saved to path."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *"abcdefghijklmnopqrstuvwxyz.,!?",
    ]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), model_max_length=64)
    config = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


class KeywordGate(BaseGate):
    """A deterministic gate: logit per label = weight * count of that label's keywords.

    Texts without keywords are uncertain (equal logits); with one keyword they are confident.
    """

    def __init__(
        self,
        keywords: dict[str, Sequence[str]] | None = None,
        weight: float = 4.0,
        temperature: float = 1.0,
    ) -> None:
        kw = keywords or {"negative": ["bad", "awful"], "positive": ["good", "great"]}
        super().__init__(list(kw), temperature)
        self.keywords = kw
        self.weight = weight
        self.calls = 0
        self.seen: list[list[str]] = []

    def _logits(self, texts: list[str]) -> FloatArray:
        self.calls += 1
        self.seen.append(list(texts))
        out = np.zeros((len(texts), len(self.labels)))
        for i, t in enumerate(texts):
            words = re.findall(r"\w+", t.lower())
            for j, lab in enumerate(self.labels):
                out[i, j] = self.weight * sum(words.count(k) for k in self.keywords[lab])
        return out


class ArrayGate:
    """A gate (protocol only, no base class) that returns given probability rows in turn."""

    def __init__(self, labels: Sequence[str], rows: Sequence[Sequence[float]]) -> None:
        self.labels = tuple(labels)
        self.rows = np.asarray(rows, dtype=float)

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        return self.rows[: len(texts)]


class FakeLLM:
    """Answers from a function of the request; counts calls and the peak number in flight."""

    def __init__(self, answer: object = "positive", delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.requests: list[LLMRequest] = []
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def _reply(self, req: LLMRequest) -> LLMReply | str:
        with self._lock:
            self.requests.append(req)
        ans = self.answer(req) if callable(self.answer) else self.answer
        if isinstance(ans, Exception):
            raise ans
        return ans  # type: ignore[return-value]

    def __call__(self, req: LLMRequest) -> LLMReply | str:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._reply(req)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def acall(self, req: LLMRequest) -> LLMReply | str:
        import asyncio

        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._reply(req)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def keyword_gate() -> KeywordGate:
    return KeywordGate()
