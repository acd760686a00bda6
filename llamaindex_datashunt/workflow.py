"""DataShuntWorkflow: the shunt as a LlamaIndex Workflow (classify, then gate or LLM)."""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.llms import LLM
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step
from llama_index_instrumentation.dispatcher import active_instrument_tags
from pydantic import Field

from datashunt import Decision, LLMRequest, Shunt
from datashunt.engine import Item, Plan

from ._runner import LlamaIndexCall, ShuntRunner

__all__ = [
    "ConfidentEvent",
    "DataShuntWorkflow",
    "ShuntProgressEvent",
    "ShuntStartEvent",
    "UncertainEvent",
]

_RUN_ID_TAG = "llamaindex.run_id"

Stage = Literal["classified", "answered_by_gate", "asking_llm", "llm_answered"]
Route = Literal["small", "llm"]


class ShuntStartEvent(StartEvent):
    """Starts a run: ``wf.run(text=...)`` builds it from keyword arguments.

    The workflow's run id (``wf.run(text=..., run_id=...)``, else a generated one) is stored
    with the call records.
    """

    text: str


class ConfidentEvent(Event):
    """The gate is confident: it answers alone."""

    text: str
    decision: Decision
    run_id: str | None = None


class UncertainEvent(Event):
    """The gate is unsure: the LLM is asked with the request's (pruned, hinted) prompt."""

    text: str
    request: LLMRequest
    run_id: str | None = None


class ShuntProgressEvent(Event):
    """Progress written to the event stream (``handler.stream_events()``).

    Attributes:
        stage: ``"classified"``, ``"answered_by_gate"``, ``"asking_llm"`` or ``"llm_answered"``.
        text: the input.
        label: the gate's label (``classified``, ``asking_llm``) or the final one.
        confidence: the gate's confidence, or ``C_l`` once the LLM answered (when known).
        route: ``"small"`` or ``"llm"``.
        candidates: the labels offered to the LLM.
        message: one human-readable line.
    """

    stage: Stage
    text: str
    label: str
    confidence: float | None = None
    route: Route
    candidates: list[str] = Field(default_factory=list)
    message: str = ""


class DataShuntWorkflow(Workflow):
    """Answer one text with the gate alone when it is confident, else with the LLM's help.

    ``classify`` emits :class:`ConfidentEvent` or :class:`UncertainEvent`; ``answer_small`` and
    ``ask_llm`` end the run; each step writes a :class:`ShuntProgressEvent` to the stream.

    Runs on its own (``await wf.run(text=...)`` returns a :class:`~datashunt.ShuntResult`) or
    inside a larger workflow: a step awaits a run, or forwards its progress events with
    ``async for ev in handler.stream_events(): ctx.write_event_to_stream(ev)``.

    Args:
        shunt: the core shunt (gate, policy, prompt mode and template, store).
        llm: the LLM for uncertain inputs (any LlamaIndex ``LLM``; chat models get the prompt
            as one user message).
        **kwargs: passed to :class:`~llama_index.core.workflow.Workflow` (``timeout``,
            ``verbose``, ...).

    Example:
        >>> wf = DataShuntWorkflow(shunt, llm=my_llm, timeout=60)  # doctest: +SKIP
        >>> result = await wf.run(text="Great blender.")  # doctest: +SKIP
        >>> result.label, result.source  # doctest: +SKIP
        ('positive', 'small')
    """

    def __init__(self, shunt: Shunt, llm: LLM, **kwargs: Any) -> None:
        self._runner = ShuntRunner(shunt, llm)
        super().__init__(**kwargs)

    @property
    def shunt(self) -> Shunt:
        """The core shunt."""
        return self._runner.shunt

    @step
    async def classify(self, ctx: Context, ev: ShuntStartEvent) -> ConfidentEvent | UncertainEvent:
        """One gate pass (in a thread); route to the gate or the LLM."""
        # the workflow runtime tags everything a run does with its id (instrumentation tags)
        run_id = active_instrument_tags.get().get(_RUN_ID_TAG)
        run_id = run_id if isinstance(run_id, str) else None
        (item,) = (await self._runner.aplan(ev.text, run_id)).decided
        d = item.decision
        message = f"gate: {d.label!r}, {d.reason}"
        ctx.write_event_to_stream(_progress("classified", ev.text, d, d.route, message))
        if item.request is None:
            return ConfidentEvent(text=ev.text, decision=d, run_id=run_id)
        return UncertainEvent(text=ev.text, request=item.request, run_id=run_id)

    @step
    async def answer_small(self, ctx: Context, ev: ConfidentEvent) -> StopEvent:
        """The gate's label is the answer (recorded if the shunt records small answers; put
        to the LLM as well when the shunt's ``audit_rate`` draws it)."""
        item = Item(0, ev.text, ev.decision, run_id=ev.run_id)
        return await self._finish(ctx, "answered_by_gate", item)

    @step
    async def ask_llm(self, ctx: Context, ev: UncertainEvent) -> StopEvent:
        """Ask the LLM with the shunt's prompt; parse, record and fall back in the core."""
        d = ev.request.decision
        message = f"asking the LLM among {', '.join(ev.request.candidates)}"
        ctx.write_event_to_stream(_progress("asking_llm", ev.text, d, "llm", message))
        item = Item(0, ev.text, d, ev.request, run_id=ev.run_id)
        return await self._finish(ctx, "llm_answered", item)

    async def _finish(self, ctx: Context, stage: Stage, item: Item) -> StopEvent:
        """Run the one item through the engine; its result ends the run."""
        result = await self._runner.arun(Plan((item,)), LlamaIndexCall(self._runner.llm))
        conf = result.llm_confidence if result.route == "llm" else result.decision.confidence
        detail = f" ({result.error})" if result.error else ""
        message = f"answer {result.label!r} from {result.source}{detail}"
        d, route = result.decision, result.route
        final = {"label": result.label, "confidence": conf}
        ctx.write_event_to_stream(_progress(stage, item.text, d, route, message, **final))
        return StopEvent(result=result)


def _progress(
    stage: Stage, text: str, d: Decision, route: Route, message: str, **final: Any
) -> ShuntProgressEvent:
    """A progress event; the gate's label and confidence unless ``final`` gives the answer's."""
    gate = {"label": d.label, "confidence": d.confidence, "candidates": list(d.candidates)}
    fields: dict[str, Any] = {**gate, **final, "stage": stage, "text": text, "route": route}
    return ShuntProgressEvent(**fields, message=message)
