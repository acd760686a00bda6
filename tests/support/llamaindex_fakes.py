"""Fakes and fixtures shared by the LlamaIndex adapter tests (nothing hosted, no network)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import Settings
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index_instrumentation import root_dispatcher
from pydantic import PrivateAttr

from datashunt import CallStore, Shunt, ShuntPolicy
from datashunt.gates import FloatArray
from tests.conftest import KeywordGate

LABELS3 = ("sports", "weather", "finance")


@pytest.fixture(autouse=True)
def llamaindex_sandbox() -> Iterator[None]:
    """Mock models in Settings, and no instrumentation handler left behind by a test."""
    saved_llm, saved_embed = Settings._llm, Settings._embed_model
    events, spans = list(root_dispatcher.event_handlers), list(root_dispatcher.span_handlers)
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    try:
        yield
    finally:
        Settings._llm, Settings._embed_model = saved_llm, saved_embed
        root_dispatcher.event_handlers = events
        root_dispatcher.span_handlers = spans


def openai_logprobs(pairs: Sequence[tuple[str, float]], chosen: int = 0) -> list[dict[str, Any]]:
    """One generated position in the OpenAI shape: ``pairs`` are its top alternatives."""
    tok, lp = pairs[chosen]
    tops = [{"token": t, "logprob": v} for t, v in pairs]
    return [{"token": tok, "logprob": lp, "top_logprobs": tops}]


class ScriptedLLM(LLM):
    """An LLM whose answers are scripted; it counts calls and keeps what it was sent.

    ``answer`` is a string, an exception to raise, or a callable of the prompt text returning
    either. ``logprobs`` (OpenAI shape) are put in ``raw`` like an OpenAI payload.
    """

    answer: Any = "sports"
    chat_model: bool = True
    logprobs: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = None
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _messages: list[list[ChatMessage]] = PrivateAttr(default_factory=list)
    _threads: list[str] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "ScriptedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            is_chat_model=self.chat_model,
            model_name="scripted-1",
            context_window=4096,
            is_function_calling_model=True,
        )

    @property
    def calls(self) -> int:
        return len(self._prompts)

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    @property
    def messages(self) -> list[list[ChatMessage]]:
        return list(self._messages)

    def _text(self, prompt: str) -> str:
        with self._lock:
            self._prompts.append(prompt)
            self._threads.append(threading.current_thread().name)
        ans = self.answer(prompt) if callable(self.answer) else self.answer
        if isinstance(ans, BaseException):
            raise ans
        return str(ans)

    def _raw(self, text: str) -> dict[str, Any]:
        choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
        if self.logprobs is not None:
            choice["logprobs"] = {"content": self.logprobs}
        return {"model": "scripted-1", "choices": [choice], "usage": self.usage}

    def _chat_response(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        with self._lock:
            self._messages.append(list(messages))
        shown = "\n".join(f"{m.role.value}: {m.content}" for m in messages)
        text = self._text(shown)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=self._raw(text)
        )

    def _completion_response(self, prompt: str) -> CompletionResponse:
        text = self._text(prompt)
        return CompletionResponse(text=text, raw=self._raw(text))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(messages)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(messages)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            r = self._chat_response(messages)
            yield r.model_copy(update={"delta": r.message.content})

        return gen()

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            r = self._chat_response(messages)
            yield r.model_copy(update={"delta": r.message.content})

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._completion_response(prompt)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return self._completion_response(prompt)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            r = self._completion_response(prompt)
            yield r.model_copy(update={"delta": r.text})

        return gen()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            r = self._completion_response(prompt)
            yield r.model_copy(update={"delta": r.text})

        return gen()


class ThreadGate(KeywordGate):
    """A KeywordGate that remembers which thread each gate pass ran in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[threading.Thread] = []

    def _logits(self, texts: list[str]) -> FloatArray:
        self.threads.append(threading.current_thread())
        return super()._logits(texts)


def sentiment_gate() -> ThreadGate:
    return ThreadGate()


class BiasedTopicGate(ThreadGate):
    """Unsure between sports and weather (0.45 each), finance unlikely (0.10); keyword: sure."""

    def __init__(self) -> None:
        super().__init__(
            {"sports": ["match", "goal"], "weather": ["rain", "sunny"], "finance": ["stock"]}
        )

    def _logits(self, texts: list[str]) -> FloatArray:
        out = super()._logits(texts)
        neutral = out.sum(axis=1) == 0
        out[neutral] = np.log([0.45, 0.45, 0.10])
        return out


def topic_shunt(store: CallStore | None, *, gate: ThreadGate | None = None, **kwargs: Any) -> Shunt:
    """A shunt whose hard pruning drops ``finance`` for texts without a keyword.

    The gate (default :class:`BiasedTopicGate`) is reliable on every class (recall 1.0) and
    ``prune_epsilon`` is 0.4, so finance (0.10) is pruned and sports, weather (0.45) stay.
    """
    g = gate or BiasedTopicGate()
    policy = ShuntPolicy(
        labels=LABELS3,
        threshold=0.9,
        prune_epsilon=0.4,
        class_recall=dict.fromkeys(LABELS3, 1.0),
        min_reliable_recall=0.9,
    )
    kwargs.setdefault("prompt_mode", "both")
    return Shunt(g, policy, store=store, **kwargs)


def temp_store(tmp_path: Path) -> Iterator[CallStore]:
    """A fresh SQLite store for one test (use: ``yield from temp_store(tmp_path)``)."""
    s = CallStore(tmp_path / "calls.sqlite")
    try:
        yield s
    finally:
        s.close()
