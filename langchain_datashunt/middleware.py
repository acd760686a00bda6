"""``DataShuntMiddleware``: the shunt inside a LangChain 1.x agent (``create_agent``).

On a turn that starts from the user's message, a confident gate answers without calling the
model; otherwise the gate's hint and pruned candidates are added to the system message and the
model is called. Turns inside the tool loop (the last message is a tool result) pass through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

try:  # the agents API is in `langchain` 1.x, not in langchain-core
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # pragma: no cover - exercised only without langchain installed
    raise ImportError(
        "DataShuntMiddleware needs the agents API of langchain>=1.0: "
        "pip install 'datashunt[langchain]'"
    ) from exc

from datashunt import (
    Decision,
    Gate,
    LLMReply,
    LLMRequest,
    Message,
    ModelCall,
    Rendered,
    RetryPolicy,
    Shunt,
    ShuntPolicy,
)
from datashunt.prompts import render_prompt
from datashunt.store import CallStore

from ._convert import as_messages, message_text, message_to_reply, model_name_of

__all__ = ["DataShuntMiddleware"]

_INSTRUCTIONS = "Answer with exactly one of these labels: {candidates}.\n{hint}"


class _HandlerCall(ModelCall[ModelRequest]):
    """The agent's model handler as the engine's model call: the request is already built,
    so ``render`` only reads the messages it sends; the reply keeps the handler's response."""

    def __init__(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse] | None = None,
        ahandler: Callable[[ModelRequest], Awaitable[ModelResponse]] | None = None,
    ) -> None:
        self.request, self.handler, self.ahandler = request, handler, ahandler
        self.model_name = model_name_of(request.model)

    def render(self, request: LLMRequest) -> Rendered[ModelRequest]:
        system = (self.request.system_message,) if self.request.system_message else ()
        sent: tuple[Message, ...] = as_messages([*system, *self.request.messages])
        return Rendered(self.request, sent)

    def send(self, payload: ModelRequest) -> LLMReply:
        assert self.handler is not None  # noqa: S101 - the sync hook passes one
        return _reply(self.handler(payload))

    async def asend(self, payload: ModelRequest) -> LLMReply:
        assert self.ahandler is not None  # noqa: S101 - the async hook passes one
        return _reply(await self.ahandler(payload))

    def is_empty(self, reply: LLMReply) -> bool:
        # a turn that calls a tool is an answer even with no text
        ai = _last_ai(reply.raw)
        return not reply.text.strip() and not (ai is not None and ai.tool_calls)


def _last_ai(response: Any) -> AIMessage | None:
    messages = getattr(response, "result", None) or (
        [response] if isinstance(response, AIMessage) else []
    )
    return next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)


def _reply(response: Any) -> LLMReply:
    """The reply in a handler's response; ``raw`` keeps the response for the agent."""
    ai = _last_ai(response)
    base = message_to_reply(ai) if ai is not None else LLMReply(text="")
    return replace(base, raw=response)


class DataShuntMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Agent middleware that shunts the model call through the gate.

    Model calls run through the engine like every other path: retried under ``retry``,
    recorded with the exact messages the model received. A call that still fails raises
    :class:`datashunt.LLMError` to the agent (after it is recorded).

    Args:
        gate: the small model.
        policy: threshold and pruning settings.
        prompt_mode: how the gate helps the model (default ``"both"``).
        store: records gate answers and model calls.
        instructions: text added to the system message on the model route; a template over the
            shunt variables (``candidates``, ``hint``, ``labels``, ...).
        retry: how failed model calls are retried (default :class:`datashunt.RetryPolicy`).

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            agent = create_agent(model, tools=[], middleware=[DataShuntMiddleware(gate, policy)])
            agent.invoke({"messages": [{"role": "user", "content": "Broke in a day."}]})
    """

    def __init__(
        self,
        gate: Gate,
        policy: ShuntPolicy | None = None,
        *,
        prompt_mode: str = "both",
        store: CallStore | str | Path | None = None,
        instructions: str = _INSTRUCTIONS,
        noun: str = "text",
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.shunt = Shunt(
            gate,
            policy,
            prompt_mode=prompt_mode,
            store=store,
            noun=noun,
            retry=retry,
            on_llm_error="raise",
        )
        self.instructions = instructions

    @property
    def name(self) -> str:
        return "DataShuntMiddleware"

    # ---- pure steps -------------------------------------------------------------------------

    def _plan(self, request: ModelRequest) -> tuple[str, Decision, LLMRequest | None] | None:
        """The gate's decision for this turn, or ``None`` when the turn is not a user question."""
        if not request.messages or not isinstance(request.messages[-1], HumanMessage):
            return None
        text = message_text(request.messages[-1])
        if not text.strip():
            return None
        decision = self.shunt.decide([text])[0]
        llm_req = self.shunt.prepare([text], [decision])[0] if decision.route == "llm" else None
        return text, decision, llm_req

    def _answer(self, text: str, decision: Decision) -> ModelResponse:
        result = self.shunt.small_result(text, decision)
        meta = {"datashunt": {"route": "small", "confidence": decision.confidence}}
        return ModelResponse(result=[AIMessage(content=result.label, response_metadata=meta)])

    def _with_hint(self, request: ModelRequest, llm_req: LLMRequest) -> ModelRequest:
        extra = render_prompt(self.instructions, llm_req.variables).strip()
        current = request.system_message.text if request.system_message else ""
        content = f"{current}\n\n{extra}" if current else extra
        return request.override(system_message=SystemMessage(content=content))

    # ---- hooks ------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        plan = self._plan(request)
        if plan is None:
            return handler(request)
        text, decision, llm_req = plan
        if llm_req is None:
            return self._answer(text, decision)
        call = _HandlerCall(self._with_hint(request, llm_req), handler=handler)
        result = self.shunt.ask(llm_req, call)
        return result.reply.raw if result.reply is not None else None

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        plan = await asyncio.to_thread(self._plan, request)
        if plan is None:
            return await handler(request)
        text, decision, llm_req = plan
        if llm_req is None:
            return await asyncio.to_thread(self._answer, text, decision)
        call = _HandlerCall(self._with_hint(request, llm_req), ahandler=handler)
        result = await self.shunt.aask(llm_req, call)
        return result.reply.raw if result.reply is not None else None
