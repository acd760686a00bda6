"""DataShuntSelector: the gate picks a route when it is sure, an LLM picks among the rest.

A drop-in :class:`~llama_index.core.base.base_selector.BaseSelector` for ``RouterQueryEngine``
and ``RouterRetriever``. Each gate label names one choice (a query engine or retriever tool):
by the tool's ``name``, or through ``label_to_choice``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection
from llama_index.core.llms import LLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata
from pydantic import ConfigDict, InstanceOf

from datashunt import ConfigError, LLMRequest, Shunt, ShuntResult
from datashunt.adapters import AnswerParser
from datashunt.engine import Plan
from datashunt.parsing import normalize
from datashunt.prompts import render_prompt

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

    model_config = ConfigDict(arbitrary_types_allowed=True)

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
        self._runner = ShuntRunner(shunt)
        if not isinstance(llm, LLM):
            raise TypeError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        self._llm = llm
        labels = shunt.policy.labels
        mapping = dict(label_to_choice or {})
        unknown = sorted(set(mapping) - set(labels))
        if unknown:
            raise ConfigError(
                f"label_to_choice names labels {unknown} that the gate does not have; "
                f"its labels are {list(labels)}"
            )
        self._label_to_choice = mapping
        self._template = template
        self._synonyms = {lab: list(forms) for lab, forms in (synonyms or {}).items()}
        AnswerParser(labels, self._synonyms)  # validates synonyms now, not at the first query

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

    # ---- the hook ---------------------------------------------------------------------------

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        index = self.choice_index(choices)
        plan = self._options_plan(self._runner.plan(query.query_str), choices, index)
        return self._selection(self._runner.run(plan, LlamaIndexCall(self._llm)), index)

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        index = self.choice_index(choices)
        plan = self._options_plan(await self._runner.aplan(query.query_str), choices, index)
        return self._selection(await self._runner.arun(plan, LlamaIndexCall(self._llm)), index)

    # ---- pure steps, shared by _select and _aselect -------------------------------------------

    def choice_index(self, choices: Sequence[ToolMetadata]) -> dict[str, int]:
        """Map every gate label to the index of its choice.

        Raises:
            ConfigError: a label matches no choice, or several; an index is out of range.
        """
        names = [c.name for c in choices]
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            if name:
                by_name.setdefault(normalize(name), []).append(i)
        out: dict[str, int] = {}
        for label in self.shunt.policy.labels:
            target = self._label_to_choice.get(label, label)
            if isinstance(target, int):
                if not 0 <= target < len(choices):
                    raise ConfigError(
                        f"label_to_choice[{label!r}] = {target} is out of range for "
                        f"{len(choices)} choices"
                    )
                out[label] = target
                continue
            found = by_name.get(normalize(target), [])
            if len(found) > 1:
                raise ConfigError(
                    f"gate label {label!r} matches several choices named {target!r} "
                    f"(indices {found}): give the tools distinct names"
                )
            if not found:
                how = (
                    f"label_to_choice maps it to {target!r}"
                    if label in self._label_to_choice
                    else "no choice has that name"
                )
                raise ConfigError(
                    f"gate label {label!r} matches no choice ({how}); the choices are named "
                    f"{names}. Name each tool after a gate label (ToolMetadata(name=...)), or "
                    f"pass label_to_choice={{{label!r}: <tool name or index>}}"
                )
            out[label] = found[0]
        return out

    def _options_plan(
        self, plan: Plan, choices: Sequence[ToolMetadata], index: Mapping[str, int]
    ) -> Plan:
        """The plan with the selector's own prompt for the LLM."""
        return plan.with_requests(lambda _item, req: self._llm_request(req, choices, index))

    def _llm_request(
        self, request: LLMRequest, choices: Sequence[ToolMetadata], index: Mapping[str, int]
    ) -> LLMRequest:
        """The selector prompt over the pruned candidates, with the answer forms it allows."""
        labels = self.shunt.policy.labels
        number = {lab: i + 1 for i, lab in enumerate(labels)}
        options = "\n".join(
            f"({number[lab]}) {lab}: {' '.join(choices[index[lab]].description.split())}"
            for lab in request.candidates
        )
        prompt = render_prompt(self._template, {**request.variables, "options": options})
        return replace(request, prompt=prompt, aliases=self._aliases(choices, index))

    def _aliases(
        self, choices: Sequence[ToolMetadata], index: Mapping[str, int]
    ) -> dict[str, list[str]]:
        # The LLM may answer with an option's number or its tool name: both become surface
        # forms of the label for the core's parser (and for C_l from logprobs).
        labels = self.shunt.policy.labels
        forms: dict[str, list[str]] = {lab: list(self._synonyms.get(lab, ())) for lab in labels}
        per_choice: dict[int, list[str]] = {}
        for lab in labels:
            per_choice.setdefault(index[lab], []).append(lab)
        for i, lab in enumerate(labels):
            forms[lab].append(str(i + 1))
            name = choices[index[lab]].name
            if name and per_choice[index[lab]] == [lab]:  # a shared tool name means no label
                forms[lab].append(name)
        return forms

    def _selection(self, result: ShuntResult, index: Mapping[str, int]) -> DataShuntSelection:
        d = result.decision
        if result.source == "small":
            reason = f"gate chose {result.label!r}: {d.reason}"
        elif result.source == "llm":
            how = result.parsed.reason if result.parsed else "parsed"
            reason = (
                f"LLM chose {result.label!r} among {list(d.candidates)} ({how}); gate: {d.reason}"
            )
        else:
            why = result.error or (result.parsed.reason if result.parsed else "no answer")
            reason = (
                f"LLM answer unusable ({why}); fell back to the gate's top choice "
                f"{result.label!r} (confidence {d.confidence:.3f})"
            )
        selection = SingleSelection(index=index[result.label], reason=reason)
        return DataShuntSelection(selections=[selection], result=result, label=result.label)
