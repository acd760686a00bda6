"""Typed values that flow through a shunt: decisions, LLM requests and replies, results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .images import ImagePart

__all__ = [
    "Decision",
    "LLMReply",
    "LLMRequest",
    "Message",
    "ParsedAnswer",
    "Receipt",
    "Route",
    "ShuntResult",
    "messages_text",
]

Route = Literal["small", "llm"]


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one input.

    Attributes:
        route: ``"small"`` when the gate answers alone, ``"llm"`` when the large model is asked.
        label: the gate's top label.
        confidence: ``C_s``, the gate's (temperature-scaled) maximum softmax probability.
        probabilities: the full probability vector, label -> probability, in label order.
        candidates: the labels offered to the large model (all labels, or the hard-pruned set).
        reason: a short human-readable explanation of the route.
        policy_version: the content hash of the policy that decided (``ShuntPolicy.version``);
            the later steps of this input use that policy even if the shunt's gate is swapped
            meanwhile (:meth:`~datashunt.Shunt.swap`).
    """

    route: Route
    label: str
    confidence: float
    probabilities: Mapping[str, float]
    candidates: tuple[str, ...]
    reason: str
    policy_version: str | None = None

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable labels with their probabilities, most probable first."""
        ranked = sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)
        return ranked[:k]


@dataclass(frozen=True)
class Message:
    """One chat message as it went over the wire (the store records these, nothing else).

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"``, ``"tool"``, ...
        content: its text (multimodal blocks are rendered to their text parts).
        images: the images it carries (:class:`~datashunt.images.ImagePart`); a record holds
            their hash and size, the wire form their bytes.
    """

    role: str
    content: str
    images: tuple[ImagePart, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"role", "content"}`` (plus ``images``: each one's type, hash and size), the
        recorded form: an image's bytes are never in it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.images:
            out["images"] = [im.to_json() for im in self.images]
        return out

    def to_wire(self) -> dict[str, Any]:
        """The OpenAI chat wire form: a text message, or a list of a text part and one
        ``image_url`` part per image."""
        if not self.images:
            return {"role": self.role, "content": self.content}
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.content}]
        parts += [{"type": "image_url", "image_url": {"url": im.data_url}} for im in self.images]
        return {"role": self.role, "content": parts}

    @property
    def text(self) -> str:
        """The content followed by each image's description (hash and size)."""
        return " ".join([self.content, *(im.describe() for im in self.images)])


def messages_text(messages: Sequence[Message]) -> str:
    """The text form of what a model received, for the store's ``prompt`` column and the
    answer cache's key: the user message itself when it is the only message, else one
    ``role: content`` block per message. An image is named by its hash and size."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text
    return "\n".join(f"{m.role}: {m.text}" for m in messages)


@dataclass(frozen=True)
class LLMRequest:
    """Everything needed to ask the large model about one input.

    Attributes:
        text: the original input.
        decision: the gate's decision for it (route is ``"llm"``).
        variables: named template variables (``text``, ``labels``, ``candidates``, ``hint``, ...)
            that any prompt template can use.
        prompt: the shunt's default prompt rendered from ``variables``; adapters with their own
            prompt template ignore it.
        aliases: extra surface forms per label that the answer may use for this request only
            (e.g. an option number ``"2"`` or a tool name), honoured when parsing the answer.
        candidates: the labels offered to the model (all labels, or the hard-pruned set);
            the answer is parsed among these. Empty means all of the policy's labels.
    """

    text: str
    decision: Decision
    variables: Mapping[str, str]
    prompt: str
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    audit: bool = False


@dataclass(frozen=True)
class LLMReply:
    """What the large model answered.

    Attributes:
        text: the answer text.
        logprobs: OpenAI-style token logprobs, a list of ``{"token", "logprob", "top_logprobs"}``
            dicts, when the provider returned them.
        prompt_tokens: tokens in the prompt, when the provider reported them.
        completion_tokens: tokens in the answer, when the provider reported them.
        model: the model name the provider reported.
        raw: the provider's own answer object (a LangChain ``AIMessage``, a LlamaIndex
            ``ChatResponse``), for adapters that hand it back; never compared or recorded.
    """

    text: str
    logprobs: list[Mapping[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ParsedAnswer:
    """The large model's free-text answer mapped to a label.

    Attributes:
        label: the label, or ``None`` when the answer could not be parsed.
        ok: whether a label was found among the allowed ones.
        reason: how it was found, or why not.
        confidence: ``C_l``, the model's probability of ``label`` from token logprobs, if any.
        probabilities: the model's distribution over the allowed labels from logprobs, if any.
    """

    label: str | None
    ok: bool
    reason: str
    confidence: float | None = None
    probabilities: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Receipt:
    """Why a result is what it is, and what it cost.

    Attributes:
        policy_version: a content hash of the policy that decided (``ShuntPolicy.version``).
        threshold: δ.
        guarantee: what a certified δ promises (``Guarantee.to_json()``), or ``None``.
        p_wrong: the calibrated probability that the gate's answer is wrong (1 - ``C_s``).
        prompt_tokens / completion_tokens: of the LLM call, when one was made and reported.
        cost: of the LLM call, from the user's price table (``None`` without a price).
        model: the model that answered.
        audited: the gate's answer was also put to the LLM as an audit.
        drift: the drift alarm had fired when this input was decided.
    """

    policy_version: str
    threshold: float
    guarantee: Mapping[str, Any] | None = None
    p_wrong: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    model: str | None = None
    audited: bool = False
    drift: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (run metadata, events, the CLI)."""
        return {
            "policy_version": self.policy_version,
            "threshold": self.threshold,
            "guarantee": dict(self.guarantee) if self.guarantee is not None else None,
            "p_wrong": self.p_wrong,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "model": self.model,
            "audited": self.audited,
            "drift": self.drift,
        }


@dataclass(frozen=True)
class ShuntResult:
    """The final answer for one input.

    Attributes:
        label: the final label (always one of the configured labels).
        route: the route taken (the decision's route).
        source: who produced ``label``: ``"small"``, ``"llm"``, or ``"fallback"`` (the LLM was
            asked but failed or answered something unparseable, so the gate's label was used).
        decision: the gate's decision.
        reply: the large model's reply, if it was asked and answered.
        parsed: the parsed answer, if the model answered.
        error: the error message, if the model call failed.
        latency_s: wall time of the model call, in seconds.
        record_id: the id of the store record, if a store is attached.
        extra: notes on how the result was made (``store_error`` when the record could not be
            written).
        attempts: LLM calls made for this input, retries included (0 on the small route).
        receipt: the policy's version, δ, the guarantee, the probability that the gate is
            wrong, and the LLM call's tokens and cost.
    """

    label: str
    route: Route
    source: Literal["small", "llm", "fallback"]
    decision: Decision
    reply: LLMReply | None = None
    parsed: ParsedAnswer | None = None
    error: str | None = None
    latency_s: float | None = None
    record_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    attempts: int = 0
    receipt: Receipt | None = None

    @property
    def llm_confidence(self) -> float | None:
        """``C_l`` for the model's answer, when logprobs were available."""
        return self.parsed.confidence if self.parsed else None
