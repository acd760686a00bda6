"""DataShuntSelector: the gate picks a route when it is sure, an LLM picks among the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection
from llama_index.core.llms import LLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata
from pydantic import InstanceOf

from datashunt import Shunt, ShuntResult
from datashunt.adapters import LabelChoices, Plan, selection_reason

from ._runner import LlamaIndexCall, ShuntRunner

__all__ = ["DEFAULT_SELECTOR_TEMPLATE", "DataShuntSelection", "DataShuntSelector"]

#: The selector's prompt. Variables: the shunt's (``text``, ``candidates``, ``hint``, ...) and
#: ``options``, the candidate labels, numbered, each with its choice's description.
DEFAULT_SELECTOR_TEMPLATE = (
    "Choose the option that should handle the query.\n"
    "Options:\n{options}\n"
    "{hint}"
    "Query: {text}\n"
    "Answer with the option name only."
)


class DataShuntSelection(SelectorResult):
    """A :class:`SelectorResult` that also carries the shunt's typed result.

    ``RouterQueryEngine`` attaches it to ``response.metadata["selector_result"]``.

    Attributes:
        result: the :class:`~datashunt.ShuntResult` (route, source, decision, LLM reply, record).
        label: the gate label the selection stands for.
    """

    result: InstanceOf[ShuntResult]
    label: str


class DataShuntSelector(BaseSelector):
    """Select a route with the gate; ask an LLM only when the gate is unsure.

    Confident queries are routed by the gate alone. For the others the LLM sees only the
    hard-pruned candidate choices, with the gate's probabilities written into its prompt
    (per the shunt's ``prompt_mode``); its answer is read by the core's
    :class:`~datashunt.AnswerParser` (a label, a choice name, or the option's number). An
    unusable answer or a failed call falls back to the gate's top choice, with the reason in
    ``SelectorResult.reasons``. Every LLM call is recorded once in the shunt's store.

    Args:
        shunt: the core shunt; its labels name the choices.
        llm: the fallback LLM (any LlamaIndex ``LLM``). Required: nothing is read from
            ``Settings``.
        label_to_choice: gate label -> choice ``name`` (or index in the choice list), for
            labels that are not spelled like their tool. Other labels match by name.
        template: the LLM prompt (``str.format`` syntax, see :data:`DEFAULT_SELECTOR_TEMPLATE`).
        synonyms: extra surface forms per label for reading the LLM's answer.

    Raises:
        ConfigError: ``label_to_choice`` names a label the gate does not have.

    Example:
        >>> selector = DataShuntSelector(shunt, llm=my_llm)  # doctest: +SKIP
        >>> engine = RouterQueryEngine(selector, [sports_tool, weather_tool], llm=my_llm)
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        shunt: Shunt,
        llm: LLM,
        *,
        label_to_choice: Mapping[str, str | int] | None = None,
        template: str = DEFAULT_SELECTOR_TEMPLATE,
        synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._runner = ShuntRunner(shunt, llm)
        self._choices = LabelChoices(shunt.policy.labels, label_to_choice, synonyms)
        self._template = template

    @property
    def shunt(self) -> Shunt:
        """The core shunt."""
        return self._runner.shunt

    # ---- PromptMixin: the template is visible to get_prompts / update_prompts -------------------

    def _get_prompts(self) -> PromptDictType:
        return {"prompt": PromptTemplate(self._template)}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "prompt" in prompts:
            self._template = prompts["prompt"].get_template()

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        index = self.choice_index(choices)
        plan = self._options_plan(self._runner.plan(query.query_str), choices, index)
        return _selection(self._runner.run(plan, LlamaIndexCall(self._runner.llm)), index)

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        index = self.choice_index(choices)
        plan = self._options_plan(await self._runner.aplan(query.query_str), choices, index)
        return _selection(await self._runner.arun(plan, LlamaIndexCall(self._runner.llm)), index)

    def choice_index(self, choices: Sequence[ToolMetadata]) -> dict[str, int]:
        """Map every gate label to the index of its choice.

        Raises:
            ConfigError: a label matches no choice, or several; an index is out of range.
        """
        return self._choices.index([c.name for c in choices])

    def _options_plan(
        self, plan: Plan, choices: Sequence[ToolMetadata], index: Mapping[str, int]
    ) -> Plan:
        """The plan with the selector's own prompt (numbered options) for the LLM."""
        names, descriptions = [c.name for c in choices], [c.description for c in choices]
        return plan.with_requests(
            lambda _item, req: self._choices.request(
                req, self._template, names, descriptions, index
            )
        )


def _selection(result: ShuntResult, index: Mapping[str, int]) -> DataShuntSelection:
    selection = SingleSelection(index=index[result.label], reason=selection_reason(result))
    return DataShuntSelection(selections=[selection], result=result, label=result.label)
