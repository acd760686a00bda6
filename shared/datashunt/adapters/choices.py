"""Gate labels mapped onto a framework's named choices (a router's tools, a chain's branches).

A selector offers the LLM the pruned candidates as numbered options, each with its choice's
description, and accepts as an answer a label, its number or its choice's name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from ..errors import ConfigError
from ..parsing import AnswerParser, normalize
from ..prompts import render_prompt
from ..types import LLMRequest, ShuntResult

__all__ = ["LabelChoices", "label_destinations", "selection_reason"]


class LabelChoices:
    """Which choice each gate label stands for, and the LLM request that offers them.

    Args:
        labels: the gate's labels.
        label_to_choice: label -> choice name (or index), for labels not spelled like their
            choice; the other labels match by name.
        synonyms: extra surface forms per label for reading the LLM's answer.

    Raises:
        ConfigError: ``label_to_choice`` names a label the gate does not have, or ``synonyms``
            are unusable.

    Example:
        >>> LabelChoices(["sports", "weather"], {"weather": "forecast"}).index(
        ...     ["forecast", "Sports"]
        ... )
        {'sports': 1, 'weather': 0}
    """

    def __init__(
        self,
        labels: Sequence[str],
        label_to_choice: Mapping[str, str | int] | None = None,
        synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.mapping = dict(label_to_choice or {})
        unknown = sorted(set(self.mapping) - set(self.labels))
        if unknown:
            raise ConfigError(
                f"label_to_choice names labels {unknown} that the gate does not have; "
                f"its labels are {list(self.labels)}"
            )
        self.synonyms = {lab: list(forms) for lab, forms in (synonyms or {}).items()}
        AnswerParser(self.labels, self.synonyms)  # validates synonyms now, not at the first query

    def index(self, names: Sequence[str | None]) -> dict[str, int]:
        """Map every label to the index of its choice among ``names``.

        Raises:
            ConfigError: a label matches no choice, or several; an index is out of range.
        """
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            if name:
                by_name.setdefault(normalize(name), []).append(i)
        out: dict[str, int] = {}
        for label in self.labels:
            target = self.mapping.get(label, label)
            if isinstance(target, int):
                if not 0 <= target < len(names):
                    raise ConfigError(
                        f"label_to_choice[{label!r}] = {target} is out of range for "
                        f"{len(names)} choices"
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
                    if label in self.mapping
                    else "no choice has that name"
                )
                raise ConfigError(
                    f"gate label {label!r} matches no choice ({how}); the choices are named "
                    f"{list(names)}. Name each tool after a gate label (ToolMetadata(name=...)), "
                    f"or pass label_to_choice={{{label!r}: <tool name or index>}}"
                )
            out[label] = found[0]
        return out

    def request(
        self,
        request: LLMRequest,
        template: str,
        names: Sequence[str | None],
        descriptions: Sequence[str],
        index: Mapping[str, int],
    ) -> LLMRequest:
        """``request`` with ``template`` rendered over its variables and ``options`` (the
        candidates, numbered, each with its choice's description), and the answer forms it
        allows."""
        number = {lab: i + 1 for i, lab in enumerate(self.labels)}
        options = "\n".join(
            f"({number[lab]}) {lab}: {' '.join(descriptions[index[lab]].split())}"
            for lab in request.candidates
        )
        prompt = render_prompt(template, {**request.variables, "options": options})
        return replace(request, prompt=prompt, aliases=self._aliases(names, index))

    def _aliases(
        self, names: Sequence[str | None], index: Mapping[str, int]
    ) -> dict[str, list[str]]:
        # The LLM may answer with an option's number or its choice's name: both become surface
        # forms of the label for the core's parser (and for C_l from logprobs).
        forms: dict[str, list[str]] = {lab: list(self.synonyms.get(lab, ())) for lab in self.labels}
        per_choice: dict[int, list[str]] = {}
        for lab in self.labels:
            per_choice.setdefault(index[lab], []).append(lab)
        for i, lab in enumerate(self.labels):
            forms[lab].append(str(i + 1))
            name = names[index[lab]]
            if name and per_choice[index[lab]] == [lab]:  # a shared choice name means no label
                forms[lab].append(name)
        return forms


def label_destinations(
    labels: Sequence[str], destinations: Collection[str], mapping: Mapping[str, str] | None
) -> dict[str, str]:
    """Each label's destination: by ``mapping`` when given, else the one named like it.

    Raises:
        ConfigError: a label has no destination among ``destinations``.
    """
    out = dict(mapping or {lab: lab for lab in labels})
    missing = [lab for lab in labels if out.get(lab) not in destinations]
    if missing:
        raise ConfigError(
            f"gate labels {missing} have no destination; destinations: {sorted(destinations)}. "
            "Name destinations after the labels or pass label_to_destination"
        )
    return out


def selection_reason(result: ShuntResult) -> str:
    """Why a label was selected, in one line: the gate, the LLM, or the fallback and why."""
    d = result.decision
    if result.source == "small":
        return f"gate chose {result.label!r}: {d.reason}"
    if result.source == "llm":
        how = result.parsed.reason if result.parsed else "parsed"
        return f"LLM chose {result.label!r} among {list(d.candidates)} ({how}); gate: {d.reason}"
    why = result.error or (result.parsed.reason if result.parsed else "no answer")
    return (
        f"LLM answer unusable ({why}); fell back to the gate's top choice "
        f"{result.label!r} (confidence {d.confidence:.3f})"
    )
