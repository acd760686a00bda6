"""``DataShuntMiddleware``: the shunt inside a LangChain 1.x agent (``create_agent``).

On a turn that starts from the user's message, a confident gate answers without calling the
model; otherwise the gate's hint and pruned candidates are added to the system message and the
model is called. Turns inside the tool loop (the last message is a tool result) pass through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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

from datashunt import Gate, Shunt, ShuntPolicy
from datashunt.store import CallStore
from datashunt.types import Decision, LLMRequest

from ._convert import message_text, message_to_reply

__all__ = ["DataShuntMiddleware"]

_INSTRUCTIONS = "Answer with exactly one of these labels: {candidates}.\n{hint}"


class DataShuntMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Agent middleware that shunts the model call through the gate.

    Args:
        gate: the small model.
        policy: threshold and pruning settings.
        prompt_mode: how the gate helps the model (default ``"both"``).
        store: records gate answers and model calls.
        instructions: text added to the system message on the model route; a template over the
            shunt variables (``candidates``, ``hint``, ``labels``, ...).

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
    ) -> None:
        super().__init__()
        self.shunt = Shunt(gate, policy, prompt_mode=prompt_mode, store=store, noun=noun)  # type: ignore[arg-type]
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
        extra = self.instructions.format_map(dict(llm_req.variables)).strip()
        current = request.system_message.text if request.system_message else ""
        content = f"{current}\n\n{extra}" if current else extra
        return request.override(system_message=SystemMessage(content=content))

    def _record(
        self, llm_req: LLMRequest, response: Any, error: BaseException | None, t0: float
    ) -> None:
        messages = getattr(response, "result", None) or (
            [response] if isinstance(response, AIMessage) else []
        )
        ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        reply = message_to_reply(ai) if ai is not None else None
        self.shunt.finish(llm_req, reply, error=error, latency_s=time.perf_counter() - t0)

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
        t0 = time.perf_counter()
        try:
            response = handler(self._with_hint(request, llm_req))
        except Exception as exc:
            self._record(llm_req, None, exc, t0)
            raise
        self._record(llm_req, response, None, t0)
        return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        plan = await asyncio.to_thread(self._plan, request)
        if plan is None:
            return await handler(request)
        text, decision, llm_req = plan
        if llm_req is None:
            return await asyncio.to_thread(self._answer, text, decision)
        t0 = time.perf_counter()
        try:
            response = await handler(self._with_hint(request, llm_req))
        except Exception as exc:
            await asyncio.to_thread(self._record, llm_req, None, exc, t0)
            raise
        await asyncio.to_thread(self._record, llm_req, response, None, t0)
        return response
