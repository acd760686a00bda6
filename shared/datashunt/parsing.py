"""Reading the large model's answer: free text to a label, and ``C_l`` from token logprobs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .types import ParsedAnswer

__all__ = ["AnswerParser", "label_distribution_from_logprobs", "normalize"]

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_CUE = re.compile(
    r"(?:answer|label|sentiment|category|class|classification|topic)\s*(?:is|:|=|would be)\s*"
    r"[\"'*`]*\s*([^\n.,;\"'*`]+)",
)
# Clauses: a negation reaches the end of its clause ("I would not say it is negative"), and a
# clause that is only a label ("**Negative**", "Sentiment: positive") is a committed answer.
_CLAUSE = re.compile(r"[.;:!?\n()\[\]]+|,|\s[-\u2013\u2014]+\s|\b(?:but|however|though|although)\b")
# Matched on normalised text (apostrophes become spaces: "isn't" -> "isn t").
_NEGATION = re.compile(
    r"\b(?:not|no|never|neither|nor|nothing|none|hardly|barely|without|cannot|except)\b"
    r"|\b\w+n t\b|\bfar from\b|\brather than\b|\binstead of\b|\bas opposed to\b|\bother than\b"
)
_NEGATED_AFTER = re.compile(
    r"^\s*(?:(?:is|was|would be|seems|sounds|feels)\s+)?(?:not|wrong|incorrect|unlikely)\b"
    r"|^\s*(?:is|was|would|does|do)n t\b"
)
_HEDGE = re.compile(
    r"\b(?:hard|difficult|impossible|tough|tricky) to (?:say|tell|determine|decide|judge)\b"
    r"|\bnot (?:sure|certain|clear)\b|\bunsure\b|\buncertain\b|\bunclear\b|\bambiguous\b"
    r"|\bcan t (?:tell|say|decide|determine)\b|\bcannot (?:tell|say|decide|determine)\b"
    r"|\beither\b|\bmaybe\b|\bperhaps\b|\bpossibly\b|\bmight be\b|\bcould be\b"
    r"|\bdon t know\b|\bno idea\b|\b50 50\b|\btorn between\b"
)
_CORRECTION = re.compile(
    r"\bwait\b|\bignore (?:that|this|it|the above|my (?:last|previous))\b|\bscratch that\b"
    r"|\bstrike that\b|\bcorrection\b|\bi mean\b|\bon second thought\b|\bon reflection\b"
    r"|\bactually\b|\bor rather\b|\breconsider\b|\bi was wrong\b|\btake (?:that|it) back\b"
    r"|\bchange my (?:answer|mind)\b|\binstead\b(?! of)|\bmistake\b|\bsorry\b"
)
# Two labels offered as alternatives: "positive or negative", "positive/negative".
_ALTERNATIVE_GAPS = frozenset({"", "or", "and", "and or", "vs", "versus", "nor", "to", "or even"})


def normalize(s: str) -> str:
    """Lower-case and reduce to letters and digits separated by single spaces."""
    return _NON_ALNUM.sub(" ", s.lower()).strip()


class AnswerParser:
    """Maps a model's free-text answer to one of ``labels``, or refuses.

    A label is returned only when the answer commits to it and to no other: the whole answer
    is a label (or synonym); or one label is stated as the answer (a cue such as "The answer
    is X", or a clause that is only the label, as in "**Negative** because ..."); or exactly
    one label is mentioned without negation. An answer that hedges ("hard to say", "maybe"),
    offers alternatives ("positive or negative"), corrects itself ("Positive? No wait, it is
    negative") or only negates ("I would not say negative") is refused: a refused answer is a
    fallback, never a training label. Refusals set :attr:`ParsedAnswer.ok` to ``False`` with
    the reason; the parser never raises.

    Args:
        labels: the label names.
        synonyms: extra surface forms per label (``{"positive": ["good", "pos"]}``).

    Example:
        >>> AnswerParser(["negative", "positive"]).parse("The answer is Negative.").label
        'negative'
        >>> AnswerParser(["negative", "positive"]).parse("Positive? No wait, negative.").ok
        False
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
        affirmed, negated, committed, alternative = self._read(text)
        mentioned = affirmed | negated
        if not mentioned:
            return None, "no label mentioned"
        hedge = _HEDGE.search(norm)
        if hedge:
            return None, f"ambiguous: the answer hedges ({hedge.group(0)!r})"
        if alternative:
            return None, f"ambiguous: the answer offers alternatives ({alternative!r})"
        correction = _CORRECTION.search(norm)
        if correction and len(mentioned) > 1:
            return None, f"ambiguous: the answer corrects itself ({correction.group(0)!r})"
        if len(committed) > 1:
            return None, f"ambiguous: the answer states {sorted(committed)}"
        if committed:
            (label,) = committed
            if label in negated:
                return None, f"ambiguous: the answer both states and negates {label!r}"
            return label, "cue"
        if len(affirmed) == 1 and not affirmed & negated:
            return affirmed.pop(), "single mention"
        if not affirmed:
            return None, f"ambiguous: only negated labels {sorted(negated)}"
        return None, f"ambiguous: mentions {sorted(affirmed)}"

    def _read(self, text: str) -> tuple[set[str], set[str], set[str], str | None]:
        """Labels mentioned without and with negation, those stated as the answer, and the
        first two different labels offered side by side ("X or Y", "X/Y", "X. Y."), if any."""
        affirmed: set[str] = set()
        negated: set[str] = set()
        committed: set[str] = set()
        alternative: str | None = None
        prev: tuple[str, bool] | None = None  # the last mention: (label, negated)
        gap = ""  # normalised text since the last mention, across clauses
        for clause in _CLAUSE.split(text.lower()):
            norm = normalize(clause)
            if not norm:
                continue
            if norm in self._forms:
                committed.add(self._forms[norm])
            end = 0
            for m in self._mention.finditer(norm):
                label = self._forms[m.group(1)]
                before, after = norm[: m.start()], norm[m.end() :]
                neg = bool(_NEGATION.search(before) or _NEGATED_AFTER.search(after))
                (negated if neg else affirmed).add(label)
                gap = normalize(f"{gap} {norm[end : m.start()]}")
                pair = prev is not None and prev[0] != label and not (prev[1] or neg)
                if pair and prev is not None and alternative is None and gap in _ALTERNATIVE_GAPS:
                    alternative = f"{prev[0]} {gap} {label}".replace("  ", " ")
                prev, gap, end = (label, neg), "", m.end()
            gap = normalize(f"{gap} {norm[end:]}")
        for cue in _CUE.finditer(text.lower()):
            stated = normalize(cue.group(1))
            found = {self._forms[m.group(1)] for m in self._mention.finditer(stated)}
            if len(found) == 1 and not _NEGATION.search(stated):
                committed |= found
        return affirmed, negated, committed, alternative

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
