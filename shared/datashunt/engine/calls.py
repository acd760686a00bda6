"""How an adapter calls its model: the one hook the engine's call lifecycle needs.

The engine owns the life of an LLM call (time it, retry it, parse the answer, record it); an
adapter contributes only a :class:`ModelCall`: how to turn an :class:`LLMRequest` into what its
framework sends (:meth:`ModelCall.render`, done once, before any retry) and how to send it
(:meth:`ModelCall.send`, retried). ``render`` also reports the exact messages the model will
receive, which is what the store records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import ConfigError, LLMError
from ..images import images_of
from ..llm.retry import empty_answer_error
from ..types import LLMReply, LLMRequest, Message

__all__ = ["AsyncLLMCall", "FunctionCall", "LLMCall", "ModelCall", "Rendered"]

P = TypeVar("P")

#: The core's own LLM callables: ``LLMRequest -> LLMReply | str`` (sync and async).
LLMCall = Callable[[LLMRequest], "LLMReply | str"]
AsyncLLMCall = Callable[[LLMRequest], Awaitable["LLMReply | str"]]


@dataclass(frozen=True)
class Rendered(Generic[P]):
    """A request made ready for one model.

    Attributes:
        payload: what :meth:`ModelCall.send` takes (a prompt value, a message list, ...).
        messages: the messages the model receives, as the store records them.
    """

    payload: P
    messages: tuple[Message, ...]


class ModelCall(Generic[P]):
    """One adapter's way of calling its model. Subclass and implement the hooks it needs.

    Required: :meth:`render` and :meth:`send`. The async forms default to the sync ones (``send``
    in a thread, so the event loop stays free); streaming needs :meth:`stream` / :meth:`astream`,
    :meth:`join` and :meth:`reply`.

    Attributes:
        model_name: the configured model, recorded when the provider does not name one (and on
            failed calls, which have no answer to name it).
    """

    model_name: str | None = None

    def render(self, request: LLMRequest) -> Rendered[P]:
        """The payload for ``request`` and the messages it carries (pure; never retried)."""
        raise NotImplementedError

    def send(self, payload: P) -> LLMReply | str:
        """Call the model once (retried by the engine on transient errors)."""
        raise NotImplementedError

    async def arender(self, request: LLMRequest) -> Rendered[P]:
        """Async :meth:`render` (default: the sync one; rendering is cheap)."""
        return self.render(request)

    async def asend(self, payload: P) -> LLMReply | str:
        """Async :meth:`send` (default: the sync one in a worker thread)."""
        return await asyncio.to_thread(self.send, payload)

    def is_empty(self, reply: LLMReply) -> bool:
        """Whether an answer is empty (retried as a dropped or truncated reply)."""
        return not reply.text.strip()

    def checked(self, value: object) -> LLMReply:
        """``send``'s value as an :class:`LLMReply`.

        Raises:
            LLMError: for an empty answer (retryable) or a value that is no answer (not).
        """
        reply = LLMReply(text=value) if isinstance(value, str) else value
        if not isinstance(reply, LLMReply):
            raise LLMError(
                f"LLM callable returned {type(value).__name__}, expected LLMReply or str",
                retryable=False,
            )
        if self.is_empty(reply) and (err := empty_answer_error(None)) is not None:
            raise err
        return reply

    # ---- streaming --------------------------------------------------------------------------

    def stream(self, payload: P) -> Iterator[Any]:
        """The model's answer as chunks."""
        raise ConfigError(f"{type(self).__name__} cannot stream")

    def astream(self, payload: P) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        raise ConfigError(f"{type(self).__name__} cannot stream asynchronously")

    def chunk_text(self, chunk: Any) -> str:
        """The text a chunk carries (text sent to the caller cannot be taken back by a retry)."""
        return str(getattr(chunk, "text", "") or "")

    def join(self, acc: Any, chunk: Any) -> Any:
        """The answer so far with ``chunk`` added (``acc`` is ``None`` for the first chunk)."""
        return chunk if acc is None else acc + chunk

    def reply(self, acc: Any) -> LLMReply | str:
        """The reply of a finished stream from its accumulated chunks."""
        raise NotImplementedError


class FunctionCall(ModelCall[LLMRequest]):
    """The core's own LLM callables (``LLMRequest -> LLMReply | str``): the request's prompt is
    sent as one user message.

    Args:
        llm: the sync callable (``None``: only ``allm``).
        allm: the async callable (``None``: ``llm`` runs in a thread).
        model_name: recorded when the reply does not name a model.
    """

    def __init__(
        self,
        llm: LLMCall | None,
        allm: AsyncLLMCall | None = None,
        model_name: str | None = None,
    ) -> None:
        if llm is None and allm is None:
            raise ConfigError("no LLM configured: pass llm= (and/or allm=) to Shunt")
        self.llm, self.allm = llm, allm
        self.model_name = model_name or _name_of(llm) or _name_of(allm)

    def render(self, request: LLMRequest) -> Rendered[LLMRequest]:
        return Rendered(request, (Message("user", request.prompt, images_of(request.text)),))

    def send(self, payload: LLMRequest) -> LLMReply | str:
        if self.llm is None:
            raise ConfigError(
                "this shunt has only an async LLM (allm): use arun/arun_batch, or pass llm="
            )
        return self.llm(payload)

    async def asend(self, payload: LLMRequest) -> LLMReply | str:
        if self.allm is not None:
            return await self.allm(payload)
        return await super().asend(payload)


def _name_of(fn: object) -> str | None:
    """A callable's configured model (``OpenAICompatLLM.model``, ``CachedLLM.model``), if any."""
    name = getattr(fn, "model", None)
    return name if isinstance(name, str) and name else None
