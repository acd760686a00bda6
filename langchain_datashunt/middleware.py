"""``DataShuntMiddleware``: the shunt inside a LangChain 1.x agent (``create_agent``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

try:  # the agents API is in `langchain` 1.x, not in langchain-core
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # pragma: no cover - exercised only without langchain installed
    raise ImportError(
        "DataShuntMiddleware needs the agents API of langchain>=1.0: "
        "pip install 'datashunt[langchain]'"
    ) from exc

from datashunt import ConfigError, Gate, LLMReply, LLMRequest, Shunt, ShuntPolicy, ShuntResult
from datashunt.adapters import Message, ModelCall, Rendered, model_name_of
from datashunt.engine import Item, Plan, ShuntOptions
from datashunt.prompts import render_prompt

from ._convert import as_messages, message_text, message_to_reply

__all__ = ["DataShuntMiddleware"]

_INSTRUCTIONS = "Answer with exactly one of these labels: {candidates}.\n{hint}"


class _HandlerCall(ModelCall[ModelRequest]):
    """The agent's model handler as the engine's model call: the request is already built,
    so ``render`` only reads the messages it sends; the reply keeps the handler's response.
    The sync hook passes its handler and the engine calls ``send``; the async hook passes its
    async handler and the engine calls ``asend``."""

    def __init__(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> None:
        self.request, self.handler = request, handler
        self.model_name = model_name_of(request.model)

    def render(self, request: LLMRequest) -> Rendered[ModelRequest]:
        system = (self.request.system_message,) if self.request.system_message else ()
        sent: tuple[Message, ...] = as_messages([*system, *self.request.messages])
        return Rendered(self.request, sent)

    def send(self, payload: ModelRequest) -> LLMReply:
        return _reply(self.handler(payload))

    async def asend(self, payload: ModelRequest) -> LLMReply:
        return _reply(await self.handler(payload))

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

    On a turn that starts from the user's message, a confident gate answers without calling
    the model; otherwise the gate's hint and pruned candidates are added to the system message.
    Turns inside the tool loop (the last message is a tool result) pass through.

    Model calls run through the engine like every other path: retried under the shunt's
    ``retry``, recorded with the exact messages the model received; gate answers are audited
    at the shunt's ``audit_rate``. A call that still fails raises :class:`datashunt.LLMError` to
    the agent (after it is recorded) under ``on_llm_error="raise"`` (what :meth:`from_gate`
    sets), or answers with the gate's label under ``"fallback"``.

    Args:
        shunt: the core :class:`datashunt.Shunt` (gate, policy, prompt mode, store, retry...).
        instructions: text added to the system message on the model route; a template over the
            shunt variables (``candidates``, ``hint``, ``labels``, ...).

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            middleware = DataShuntMiddleware.from_gate(gate, policy, store="calls.sqlite")
            agent = create_agent(model, tools=[], middleware=[middleware])
            agent.invoke({"messages": [{"role": "user", "content": "Broke in a day."}]})
    """

    def __init__(self, shunt: Shunt, *, instructions: str = _INSTRUCTIONS) -> None:
        super().__init__()
        if not isinstance(shunt, Shunt):
            raise ConfigError(
                f"DataShuntMiddleware takes a built datashunt.Shunt, got {type(shunt).__name__}:"
                " use DataShuntMiddleware.from_gate(gate, policy, ...) to build one"
            )
        self.shunt = shunt
        self.instructions = instructions

    @classmethod
    def from_gate(
        cls,
        gate: Gate,
        policy: ShuntPolicy | None = None,
        *,
        instructions: str = _INSTRUCTIONS,
        **options: Any,
    ) -> DataShuntMiddleware:
        """Build the :class:`Shunt` from a gate, its policy and any :class:`ShuntOptions` as
        keywords (default ``prompt_mode="both"``, ``on_llm_error="raise"``)."""
        opts, rest = ShuntOptions.split({"prompt_mode": "both", "on_llm_error": "raise", **options})
        if rest:
            raise ConfigError(f"unknown options {sorted(rest)} for DataShuntMiddleware")
        return cls(Shunt(gate, policy, options=opts), instructions=instructions)

    @property
    def name(self) -> str:
        return "DataShuntMiddleware"

    def _plan(self, request: ModelRequest) -> Plan | None:
        """The engine's plan for this turn, or ``None`` when the turn is not a user question."""
        if not request.messages or not isinstance(request.messages[-1], HumanMessage):
            return None
        text = message_text(request.messages[-1])
        if not text.strip():
            return None
        return self.shunt.plan([text])

    def _response(self, result: ShuntResult) -> Any:
        """The model's own response (a tool call or free text included: the agent reads it),
        or the gate's label (gate route, or a failed call under ``on_llm_error="fallback"``)."""
        if result.route == "llm" and result.reply is not None:
            return result.reply.raw
        route = {"route": result.route, "source": result.source}
        meta = {"datashunt": {**route, "confidence": result.decision.confidence}}
        return ModelResponse(result=[AIMessage(content=result.label, response_metadata=meta)])

    def _call(self, request: ModelRequest, item: Item, handler: Any) -> _HandlerCall:
        """The handler's call of this turn, the gate's hint added to the system message."""
        assert item.request is not None  # noqa: S101 - asked items carry a request
        extra = render_prompt(self.instructions, item.request.variables).strip()
        current = request.system_message.text if request.system_message else ""
        content = f"{current}\n\n{extra}" if current else extra
        hinted = request.override(system_message=SystemMessage(content=content))
        return _HandlerCall(hinted, handler)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        plan = self._plan(request)
        if plan is None:
            return handler(request)
        (result,) = self.shunt.run_plan(plan, lambda item: self._call(request, item, handler))
        return self._response(result)  # type: ignore[arg-type]

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        plan = await asyncio.to_thread(self._plan, request)
        if plan is None:
            return await handler(request)
        (result,) = await self.shunt.arun_plan(plan, lambda it: self._call(request, it, handler))
        return self._response(result)  # type: ignore[arg-type]
