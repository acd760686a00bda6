"""``DataShuntRouter``: the gate picks a destination runnable; a chat model decides the rest."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import get_executor_for_config, patch_config
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import Field, PrivateAttr

from datashunt import ConfigError, LLMReply, LLMRequest, Shunt
from datashunt.adapters import Rendered, label_destinations

from ._convert import message_to_reply
from .model_call import ChatModelCall
from .output import ShuntOutput
from .runnable import DataShuntRunnable, ShuntRunnable

__all__ = ["ROUTER_TEMPLATE", "DataShuntRouter"]

ROUTER_TEMPLATE = (
    "Choose where this input should go. Options: {candidates}.\n"
    "{hint}"
    "Input: {text}\n"
    "Answer with the option name only."
)
_ROUTER_PROMPT = ChatPromptTemplate.from_messages([("human", ROUTER_TEMPLATE)])


class _ChooserCall(ChatModelCall):
    """Asks the chat model for one of the candidate names: structured output restricted to the
    candidates when the model supports it, plain text otherwise (parsed by the core)."""

    def __init__(self, llm: BaseChatModel, config: RunnableConfig, structured: bool | None) -> None:
        super().__init__(_ROUTER_PROMPT, llm, config)
        self.chat = llm
        self.structured = structured

    def _rendered(self, value: Any, request: LLMRequest) -> Rendered[Any]:
        # the payload carries the request's candidates: the structured output's enum
        rendered = super()._rendered(value, request)
        return Rendered((rendered.payload, list(request.candidates)), rendered.messages)

    def _structured_model(self, candidates: list[str]) -> Runnable[Any, Any] | None:
        if self.structured is False:
            return None
        schema = {
            "title": "route",
            "description": "The destination for the input.",
            "type": "object",
            "properties": {"destination": {"type": "string", "enum": candidates}},
            "required": ["destination"],
        }
        try:
            return self.chat.with_structured_output(schema)
        except (NotImplementedError, ValueError, TypeError):
            if self.structured:
                raise
            return None

    @staticmethod
    def _as_reply(value: Any) -> LLMReply:
        chosen = value.get("destination", value) if isinstance(value, Mapping) else value
        return message_to_reply(AIMessage(content=str(chosen)))

    def send(self, payload: Any) -> LLMReply:
        value, candidates = payload
        model = self._structured_model(candidates)
        if model is not None:
            try:
                return self._as_reply(model.invoke(value, self.config))
            except Exception:
                if self.structured:
                    raise
        return super().send(value)

    async def asend(self, payload: Any) -> LLMReply:
        value, candidates = payload
        model = self._structured_model(candidates)
        if model is not None:
            try:
                return self._as_reply(await model.ainvoke(value, self.config))
            except Exception:
                if self.structured:
                    raise
        return await super().asend(value)


class _RoutingClassifier(DataShuntRunnable):
    """The shunt that makes the routing decisions: its model calls go through the chooser."""

    structured_output: bool | None = None

    def _call(self, item: Any, config: RunnableConfig) -> ChatModelCall:
        cfg = super()._call(item, config).config
        return _ChooserCall(self._model, cfg, self.structured_output)  # type: ignore[arg-type]


class DataShuntRouter(ShuntRunnable[Any, Any]):
    """Route each input to a destination runnable chosen by the gate, or by a chat model among
    the gate's pruned candidates when the gate is unsure.

    Feels like ``RunnableBranch``: the input goes unchanged to the chosen destination and its
    output is returned. The decision is a child run (``DataShunt``) with the usual custom event
    and metadata; the destination runs as a child named after it.

    Args:
        shunt: the core :class:`datashunt.Shunt`; its labels name the destinations (or see
            ``label_to_destination``). :meth:`from_gate` builds one with the router's defaults
            (``prompt_mode="both"``: hint and pruning; inputs called "input").
        destinations: destination name -> runnable.
        llm: the chat model that picks among the pruned candidates when the gate is unsure;
            without one, the gate always decides.
        structured_output: ``None`` tries structured output restricted to the candidates and
            falls back to plain text; ``True`` requires it; ``False`` uses plain text.
        label_to_destination: maps gate labels to destination names when they differ.

    Example:
        .. code-block:: python

            router = DataShuntRouter.from_gate(
                gate, policy, llm=ChatOpenAI(model="gpt-4o-mini"),
                destinations={"refund": refund_chain, "shipping": shipping_chain},
            )
            router.invoke({"text": "Where is my parcel?"})
    """

    shunt_defaults: ClassVar[dict[str, Any]] = {"prompt_mode": "both", "noun": "input"}
    destinations: dict[str, Runnable[Any, Any]]
    llm: BaseChatModel | None = None
    input_key: str = "text"
    structured_output: bool | None = None
    label_to_destination: dict[str, str] | None = None
    name: str | None = Field(default="DataShuntRouter")

    _classifier: DataShuntRunnable = PrivateAttr()
    _to_dest: dict[str, str] = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # set up here, not in model_post_init, so our ConfigError is not wrapped by pydantic
        labels, mapping = self.shunt.policy.labels, self.label_to_destination
        self._to_dest = label_destinations(labels, self.destinations, mapping)
        shunt = self.shunt
        if self.llm is None:  # no chat model: the gate always decides
            policy = shunt.policy.with_(threshold=0.0)
            shunt = Shunt(shunt.gate, policy, options=shunt.options.with_(store=shunt.store))
        self._classifier = _RoutingClassifier(
            shunt=shunt,
            llm=self.llm or RunnableLambda(_unavailable, name="choose_destination"),
            input_key=self.input_key,
            structured_output=self.structured_output,
        )

    @property
    def classifier(self) -> DataShuntRunnable:
        """The shunt that makes the routing decisions."""
        return self._classifier

    def _routed(
        self, decision: ShuntOutput | Exception, config: RunnableConfig
    ) -> tuple[Runnable[Any, Any], RunnableConfig]:
        """The destination of a decision, and its run config: a child named after it (a failed
        decision, kept under ``return_exceptions``, is raised)."""
        if isinstance(decision, Exception):
            raise decision
        assert decision.label is not None  # noqa: S101 - a full output always has a label
        name = self._to_dest[decision.label]
        cfg = patch_config(config, run_name=name)
        route = {"datashunt_destination": name, "datashunt_route": decision.route}
        cfg["metadata"] = {**cfg.get("metadata", {}), **route}
        return self.destinations[name], cfg

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[Any],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[Any]:
        # one gate pass for the whole batch, each input's decision a child run; under strict,
        # one bad input (or a failed choice) fails the batch before any destination runs
        decisions = self._classifier.batch(inputs, config, return_exceptions=not strict)

        def go(i: int) -> Any:
            try:
                dest, cfg = self._routed(decisions[i], config[i])
                return dest.invoke(inputs[i], cfg)
            except Exception as exc:  # a failed decision or destination: this input's outcome
                return exc

        with get_executor_for_config(config[0]) as executor:
            return list(executor.map(go, range(len(inputs))))

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[Any],
        config: list[RunnableConfig],
        strict: bool = False,
    ) -> list[Any]:
        decisions = await self._classifier.abatch(inputs, config, return_exceptions=not strict)

        async def go(i: int) -> Any:
            try:
                dest, cfg = self._routed(decisions[i], config[i])
                return await dest.ainvoke(inputs[i], cfg)
            except Exception as exc:  # a failed decision or destination: this input's outcome
                return exc

        return await gather_with_concurrency(
            config[0].get("max_concurrency"), *(go(i) for i in range(len(inputs)))
        )

    def _stream(
        self, inputs: Iterator[Any], run_manager: Any, config: RunnableConfig
    ) -> Iterator[Any]:
        (value,) = inputs
        dest, cfg = self._routed(self._classifier.invoke(value, config), config)
        yield from dest.stream(value, cfg)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)


def _unavailable(_: Any) -> BaseMessage:
    raise ConfigError("no chat model configured for DataShuntRouter")
