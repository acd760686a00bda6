"""Reading the large model's answer: free text to a label, and ``C_l`` from token logprobs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .types import ParsedAnswer

__all__ = ["AnswerParser", "label_distribution_from_logprobs", "normalize"]

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_NEGATION = re.compile(r"\b(not|isn't|isnt|no|never|neither|nor)\s+(?:an?\s+|the\s+)?$")
_CUE = re.compile(
    r"(?:answer|label|sentiment|category|class|classification|topic)\s*(?:is|:|=|would be)\s*"
    r"[\"'*`]*\s*([^\n.,;\"'*`]+)",
)


def normalize(s: str) -> str:
    """Lower-case and reduce to letters and digits separated by single spaces."""
    return _NON_ALNUM.sub(" ", s.lower()).strip()


class AnswerParser:
    """Maps a model's free-text answer to one of ``labels``.

    Tries, in order: the whole answer is a label (or synonym); a cue such as "The answer is X";
    exactly one label mentioned (negated mentions like "not positive" do not count); the first
    word is a label. Otherwise the answer is unparsed: :attr:`ParsedAnswer.ok` is ``False``,
    never an exception.

    Args:
        labels: the label names.
        synonyms: extra surface forms per label (``{"positive": ["good", "pos"]}``).

    Example:
        >>> AnswerParser(["negative", "positive"]).parse("The answer is Negative.").label
        'negative'
    """

    def __init__(
        self, labels: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.labels = tuple(labels)
        self.synonyms = {lab: list(v) for lab, v in (synonyms or {}).items()}
        forms: dict[str, str] = {}
        for lab in self.labels:
            forms[normalize(lab)] = lab
        for lab, syns in (synonyms or {}).items():
            if lab not in self.labels:
                raise ValueError(f"synonyms name unknown label {lab!r}; labels: {self.labels}")
            for s in syns:
                forms.setdefault(normalize(s), lab)
        forms.pop("", None)
        self._forms = forms
        # Longest forms first, so "very positive" wins over "positive".
        alts = sorted(forms, key=len, reverse=True)
        self._mention = re.compile(r"\b(" + "|".join(re.escape(a) for a in alts) + r")\b")

    def with_aliases(self, aliases: Mapping[str, Sequence[str]]) -> AnswerParser:
        """A parser that also knows ``aliases`` (label -> extra surface forms)."""
        merged = {lab: list(forms) for lab, forms in self.synonyms.items()}
        for lab, extra in aliases.items():
            merged.setdefault(lab, []).extend(extra)
        return AnswerParser(self.labels, merged)

    def parse(self, text: str, allowed: Sequence[str] | None = None) -> ParsedAnswer:
        """Parse ``text``; a label outside ``allowed`` (the hard-pruned candidates) is unparsed."""
        label, how = self._find(text or "")
        if label is None:
            return ParsedAnswer(None, False, how)
        if allowed is not None and label not in allowed:
            return ParsedAnswer(None, False, f"answer {label!r} is not among the candidates")
        return ParsedAnswer(label, True, how)

    def _find(self, text: str) -> tuple[str | None, str]:
        norm = normalize(text)
        if not norm:
            return None, "empty answer"
        if norm in self._forms:
            return self._forms[norm], "exact"
        cue = _CUE.search(text.lower())
        if cue:
            found = self._mentions(normalize(cue.group(1)))
            if len(found) == 1:
                return found.pop(), "cue"
        found = self._mentions(norm)
        if len(found) == 1:
            return found.pop(), "single mention"
        first = norm.split(" ", 1)[0]
        if first in self._forms:
            return self._forms[first], "first word"
        if not found:
            return None, "no label mentioned"
        return None, f"ambiguous: mentions {sorted(found)}"

    def _mentions(self, norm: str) -> set[str]:
        out = set()
        for m in self._mention.finditer(norm):
            if not _NEGATION.search(norm[: m.start()]):
                out.add(self._forms[m.group(1)])
        return out

    def label_for_token(self, token: str) -> set[str]:
        """Labels whose surface forms start with this (non-empty) token."""
        t = normalize(token)
        if not t:
            return set()
        return {lab for form, lab in self._forms.items() if form.startswith(t)}


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def label_distribution_from_logprobs(
    logprobs: Sequence[Any], parser: AnswerParser, allowed: Sequence[str] | None = None
) -> dict[str, float] | None:
    """The model's distribution over labels from OpenAI-style token logprobs.

    Finds the first generated token that begins a label, then spreads the probability mass of
    that position's ``top_logprobs`` over the labels each alternative token begins
    (tokens that begin several labels are skipped), and normalises over ``allowed``.

    Returns:
        ``{label: probability}``, or ``None`` when no position begins a label.
    """
    allowed_set = set(allowed) if allowed is not None else set(parser.labels)
    for entry in logprobs or ():
        token = _get(entry, "token") or ""
        if not parser.label_for_token(token) & allowed_set:
            continue
        alts = list(_get(entry, "top_logprobs") or [])
        if not any(_get(a, "token") == token for a in alts):
            alts.append({"token": token, "logprob": _get(entry, "logprob")})
        mass: dict[str, float] = {}
        seen: set[str] = set()
        for alt in alts:
            tok, lp = _get(alt, "token"), _get(alt, "logprob")
            if tok is None or lp is None or tok in seen:
                continue
            seen.add(tok)
            labs = parser.label_for_token(tok) & allowed_set
            if len(labs) == 1 and math.isfinite(float(lp)):
                lab = labs.pop()
                mass[lab] = mass.get(lab, 0.0) + math.exp(float(lp))
        total = sum(mass.values())
        if total <= 0:
            return None
        return {lab: mass.get(lab, 0.0) / total for lab in parser.labels if lab in allowed_set}
    return None
