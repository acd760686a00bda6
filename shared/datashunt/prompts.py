"""Prompt Pruning: the gate's output rendered into named template variables.

*Soft* pruning writes the gate's top labels and probabilities into the prompt as a hint.
*Hard* pruning removes candidate labels the gate confidently rules out and is reliable on.
Both fill variables (``text``, ``labels``, ``candidates``, ``hint``, ...) that any prompt
template can use; user text is only ever a *value*, so braces in it cannot alter a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .errors import ConfigError
from .images import IMAGE_PLACEHOLDER, is_image_input
from .policy import ShuntPolicy
from .types import Decision, LLMRequest

__all__ = [
    "DEFAULT_TEMPLATE",
    "PROMPT_MODES",
    "PromptMode",
    "TEMPLATE_VARIABLES",
    "build_request",
    "conformal_candidates",
    "hard_candidates",
    "offered_candidates",
    "prompt_variables",
    "render_prompt",
    "soft_hint",
]

PromptMode = Literal["none", "soft", "hard", "both"]
PROMPT_MODES: tuple[str, ...] = ("none", "soft", "hard", "both")

#: The variables :func:`prompt_variables` fills.
TEMPLATE_VARIABLES = ("text", "labels", "candidates", "hint", "small_label", "small_confidence")

# Instruction first, the input last, ending on "Answer:": on 60 amazon-mds dev reviews this
# wording took SmolLM2-135M from 0.48 (label list after "exactly one of these labels", the
# instruction after the text) to 0.75. A task-specific template does better still (the demo's).
DEFAULT_TEMPLATE = (
    "Classify this text as one of: {candidates}. {hint}Answer with one word.\nText: {text}\nAnswer:"
)


def soft_hint(probabilities: Mapping[str, float], top_k: int = 3, noun: str = "text") -> str:
    """The soft prompt: the gate's top labels with probabilities, as one sentence.

    Example:
        >>> soft_hint({"negative": 0.38, "positive": 0.62})
        'A smaller model labelled this text positive with probability 0.62 (negative 0.38).'
    """
    ranked = sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
    (lab, p), rest = ranked[0], ranked[1:]
    others = ", ".join(f"{lb} {q:.2f}" for lb, q in rest)
    tail = f" ({others})" if others else ""
    return f"A smaller model labelled this {noun} {lab} with probability {p:.2f}{tail}."


def conformal_candidates(
    probabilities: Mapping[str, float], labels: tuple[str, ...], qhat: float
) -> tuple[str, ...]:
    """The split-conformal (LAC) set: the labels with ``1 - p <= qhat``, in label order; the
    top label alone when none qualifies (never empty). See
    :mod:`datashunt.training.guarantees.conformal`.
    """
    keep = tuple(lab for lab in labels if 1.0 - probabilities.get(lab, 0.0) <= qhat + 1e-12)
    return keep or (max(labels, key=lambda lab: probabilities.get(lab, 0.0)),)


def hard_candidates(probabilities: Mapping[str, float], policy: ShuntPolicy) -> tuple[str, ...]:
    """The hard prompt's candidate labels, in label order.

    A policy with conformal sets (``policy.conformal``) offers the conformal set, which holds
    the true label with the coverage it was fitted for. Otherwise:

    A label is removed only when its probability is below ``policy.prune_epsilon`` *and* the
    gate's calibration recall on that class is at least ``policy.min_reliable_recall`` (a gate
    that often misses a class must not rule it out). At least ``policy.min_candidates`` labels
    stay (the most probable ones), so the set is never empty.
    """
    if policy.conformal is not None:
        return conformal_candidates(probabilities, policy.labels, float(policy.conformal["qhat"]))
    keep = [
        lab
        for lab in policy.labels
        if not (
            probabilities.get(lab, 0.0) < policy.prune_epsilon
            and policy.class_recall.get(lab, 0.0) >= policy.min_reliable_recall
        )
    ]
    floor = min(policy.min_candidates, len(policy.labels))
    if len(keep) < floor:
        ranked = sorted(policy.labels, key=lambda lb: probabilities.get(lb, 0.0), reverse=True)
        for lab in ranked:
            if lab not in keep:
                keep.append(lab)
            if len(keep) >= floor:
                break
    order = {lab: i for i, lab in enumerate(policy.labels)}
    return tuple(sorted(keep, key=order.__getitem__))


def offered_candidates(
    decision: Decision, policy: ShuntPolicy, mode: PromptMode
) -> tuple[str, ...]:
    """The labels the large model is offered: the hard-pruned set under ``"hard"`` and
    ``"both"``, all labels otherwise."""
    if mode not in PROMPT_MODES:
        raise ConfigError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
    return tuple(decision.candidates) if mode in ("hard", "both") else tuple(policy.labels)


def prompt_variables(
    decision: Decision,
    policy: ShuntPolicy,
    mode: PromptMode,
    text: str,
    *,
    noun: str = "text",
) -> dict[str, str]:
    """The template variables for one LLM-routed input.

    Args:
        decision: the gate's decision (its ``candidates`` are the hard-pruned set).
        policy: gives the label order and ``hint_top_k``.
        mode: ``"none"`` (all labels, no hint), ``"soft"`` (hint), ``"hard"`` (pruned
            candidates), ``"both"``.
        text: the text to put in the prompt (the input, or its transferred form).
        noun: what the input is called in the hint ("review", "question", ...).
    """
    cands = offered_candidates(decision, policy, mode)
    soft = mode in ("soft", "both")
    # Under hard pruning the hint names only the labels still on offer: listing a removed
    # label, even with a small probability, would invite the answer it rules out.
    shown = {lab: p for lab, p in decision.probabilities.items() if lab in cands}
    return {
        # an image goes to the model as a part of the message, not as text in the prompt
        "text": IMAGE_PLACEHOLDER if is_image_input(text) else text,
        "labels": ", ".join(policy.labels),
        "candidates": ", ".join(cands),
        "hint": soft_hint(shown, policy.hint_top_k, noun) + "\n" if soft else "",
        "small_label": decision.label,
        "small_confidence": f"{decision.confidence:.2f}",
    }


def render_prompt(template: str, variables: Mapping[str, str]) -> str:
    """Fill ``template`` (``str.format`` syntax) from ``variables``.

    Raises:
        ConfigError: naming a template variable that is not provided.
    """
    try:
        return template.format_map(dict(variables))
    except KeyError as exc:
        raise ConfigError(
            f"prompt template uses {{{exc.args[0]}}}, which is not a shunt variable; "
            f"available: {sorted(variables)}"
        ) from exc


def build_request(
    template: str,
    policy: ShuntPolicy,
    decision: Decision,
    mode: PromptMode,
    text: str,
    shown: str,
    noun: str = "text",
    audit: bool = False,
) -> LLMRequest:
    """The :class:`LLMRequest` for one input: its variables, prompt and offered candidates.

    Args:
        text: the input; ``shown``: what the prompt shows of it (its transferred form).
        audit: an audit of a gate answer (mode ``"none"``: no hint, every label).
    """
    variables = prompt_variables(decision, policy, mode, shown, noun=noun)
    prompt = render_prompt(template, variables)
    cands = offered_candidates(decision, policy, mode)
    return LLMRequest(text, decision, variables, prompt, candidates=cands, audit=audit)
