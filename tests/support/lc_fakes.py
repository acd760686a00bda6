"""A counting fake chat model for the LangChain adapter tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr


class CountingChat(BaseChatModel):
    """Answers ``answer(prompt_text)``; counts calls, keeps prompts, tracks peak concurrency."""

    answer: Callable[[str], str | Exception] = lambda _prompt: "positive"
    delay: float = 0.0
    model_name: str = "counting-fake"
    logprobs: list[dict[str, Any]] | None = None

    _prompts: list[str] = PrivateAttr(default_factory=list)
    _received: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "counting-fake"

    @property
    def prompts(self) -> list[str]:
        return self._prompts

    @property
    def received(self) -> list[list[BaseMessage]]:
        """The exact message lists the model was called with, in call order."""
        return self._received

    @property
    def calls(self) -> int:
        return len(self._prompts)

    @property
    def peak(self) -> int:
        return self._peak

    def _text(self, messages: list[BaseMessage]) -> str:
        prompt = "\n".join(str(m.text) for m in messages)
        with self._lock:
            self._prompts.append(prompt)
            self._received.append(list(messages))
        ans = self.answer(prompt)
        if isinstance(ans, Exception):
            raise ans
        return ans

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)

    def _exit(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _message(self, text: str) -> AIMessage:
        meta: dict[str, Any] = {"model_name": "counting-fake"}
        if self.logprobs is not None:
            meta["logprobs"] = {"content": self.logprobs}
        usage = {"input_tokens": 20, "output_tokens": 1, "total_tokens": 21}
        return AIMessage(content=text, response_metadata=meta, usage_metadata=usage)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._enter()
        try:
            if self.delay:
                time.sleep(self.delay)
            text = self._text(messages)
        finally:
            self._exit()
        return ChatResult(generations=[ChatGeneration(message=self._message(text))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._enter()
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            text = self._text(messages)
        finally:
            self._exit()
        return ChatResult(generations=[ChatGeneration(message=self._message(text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._text(messages)
        for i, piece in enumerate(text.split(" ")):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=(" " if i else "") + piece))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
