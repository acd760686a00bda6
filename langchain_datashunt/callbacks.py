"""Callback handlers that record every chat-model call into a datashunt store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from datashunt.store import CallRecorder, CallStore
from datashunt.types import LLMReply

from ._convert import as_messages, message_to_reply

__all__ = ["AsyncDataShuntCallbackHandler", "DataShuntCallbackHandler"]


def _model_name(
    serialized: dict[str, Any] | None, kwargs: dict[str, Any], meta: dict[str, Any]
) -> str | None:
    """The configured model: from the call's parameters, the serialized model, or the
    ``ls_model_name`` LangChain puts in the run metadata (so failed calls name it too)."""
    params = kwargs.get("invocation_params") or {}
    name = params.get("model_name") or params.get("model")
    if not name and serialized:
        sk = serialized.get("kwargs") or {}
        name = sk.get("model_name") or sk.get("model")
    name = name or meta.get("ls_model_name")
    return str(name) if name else None


def _reply(response: LLMResult) -> tuple[LLMReply, str | None]:
    """The reply of the first generation, tokens filled from ``llm_output``; and its model."""
    gens = response.generations
    gen = gens[0][0] if gens and gens[0] else None
    if isinstance(gen, ChatGeneration):
        reply = message_to_reply(gen.message)
    else:
        reply = LLMReply(text=gen.text if gen is not None else "")
    llm_output = response.llm_output or {}
    usage = llm_output.get("token_usage") or {}
    reply = replace(
        reply,
        prompt_tokens=reply.prompt_tokens or usage.get("prompt_tokens"),
        completion_tokens=reply.completion_tokens or usage.get("completion_tokens"),
    )
    return reply, llm_output.get("model_name")


class DataShuntCallbackHandler(BaseCallbackHandler):
    """Records chat-model calls into a store (sync; safe from many threads).

    Attach it to any chat model (``ChatOpenAI(callbacks=[handler])``) or to a run's config.
    Each call is recorded once, from its start, end and error callbacks paired by run id;
    calls that a :class:`DataShuntRunnable` with a store records itself (metadata
    ``datashunt_recorded``) are skipped.

    Args:
        store: a :class:`datashunt.CallStore`, a URL or a SQLite path.
        labels: if given, answers are parsed to labels and ``C_l`` is computed from logprobs.
        input_key: the chain input variable holding the text classified: given to a chain's
            run (``chain.invoke(x, config={"callbacks": [handler]})``), each record keeps
            that text as its input beside the rendered prompt (default: the last user message).

    Example:
        .. code-block:: python

            handler = DataShuntCallbackHandler("calls.sqlite", labels=["neg", "pos"])
            chain = prompt | ChatOpenAI() | StrOutputParser()
            chain.invoke({"text": "..."}, config={"callbacks": [handler]})
    """

    def __init__(
        self,
        store: CallStore | str | Path,
        labels: Sequence[str] | None = None,
        *,
        input_key: str = "text",
    ) -> None:
        super().__init__()
        self.recorder = CallRecorder(store, source="callback", labels=labels)
        self.input_key = input_key
        # run id -> the text the chain classifies (its input_key variable), passed down to the
        # runs nested in it, so a record keeps the input beside the rendered prompt
        self._texts: dict[UUID, str] = {}

    @property
    def store(self) -> CallStore:
        """The call store records go to."""
        return self.recorder.store

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(inputs, dict) and isinstance(inputs.get(self.input_key), str):
            self._texts[run_id] = inputs[self.input_key]
        elif isinstance(inputs, str) and parent_run_id is None:
            self._texts[run_id] = inputs
        elif parent_run_id in self._texts:
            self._texts[run_id] = self._texts[parent_run_id]  # type: ignore[index]

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._texts.pop(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._texts.pop(run_id, None)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        meta = metadata or {}
        if meta.get("datashunt_recorded"):
            return  # the shunt records this call itself
        self.recorder.start(
            run_id,
            as_messages(messages[0] if messages else []),
            model=_model_name(serialized, kwargs, meta),
            input_text=self._texts.get(parent_run_id) if parent_run_id is not None else None,
            gate_label=meta.get("datashunt_label"),
            gate_confidence=meta.get("datashunt_confidence"),
            candidates=meta.get("datashunt_candidates"),
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if self.recorder.tracks(run_id):
            reply, model = _reply(response)
            self.recorder.end(run_id, reply, model=model)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.fail(run_id, error)


class AsyncDataShuntCallbackHandler(DataShuntCallbackHandler, AsyncCallbackHandler):  # type: ignore[misc]
    """The async twin of :class:`DataShuntCallbackHandler`: store writes run in a worker thread,
    so the event loop never waits on the database. The other hooks only touch memory and run
    inline (``run_inline``), in the order LangChain calls them."""

    run_inline = True

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        if self.recorder.tracks(run_id):
            reply, model = _reply(response)
            await self.recorder.aend(run_id, reply, model=model)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        await self.recorder.afail(run_id, error)
