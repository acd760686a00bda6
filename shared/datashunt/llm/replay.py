"""Answers replayed from recorded files instead of a model.

:class:`ColumnReplayLLM` answers with a column of a labelled data file (``mr``'s ``llm_label``,
``isear``'s ``gpt35_label``, or your own logged answers): the LLM's answer for an input is its
recorded label, and an empty cell is an unreadable answer. :class:`ReplayLLM` reads a file
with an ``answer`` column and either a ``prompt`` column (matched
exactly) or a ``text`` column (the input, matched whatever the prompt around it), such as
:meth:`~datashunt.llm.cache.LLMCache.export_jsonl` writes.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..data import read_text_column
from ..errors import DataError, LLMError
from ..types import LLMReply, LLMRequest
from .cache import CachedAnswer

__all__ = ["NO_RECORDED_ANSWER", "ColumnReplayLLM", "ReplayLLM"]

#: What :class:`ColumnReplayLLM` answers for an empty cell: text that names no label, so the
#: engine's parser finds it unreadable (the shunt falls back to the gate; the LLM alone is wrong).
NO_RECORDED_ANSWER = "(no answer recorded)"

_ANSWER_COLS = ("answer", "response", "output", "completion")


class ReplayLLM:
    """Answers from a recorded CSV or JSONL file instead of a model.

    Each row needs an answer (column ``answer``, ``response``, ``output`` or ``completion``) and
    a ``prompt`` (matched exactly first) or a ``text`` (the input, matched when no prompt
    matches). Optional ``prompt_tokens``, ``completion_tokens``, ``latency_s`` columns are
    reported as the answer's cost.

    Args:
        path: the recorded answers.
        model: the name answers are reported under (default ``"replay:<file name>"``).

    A request with no recorded answer raises a non-retryable :class:`LLMError` that says so;
    ``misses`` counts them.
    """

    def __init__(self, path: str | Path, model: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(f"replay file {self.path} does not exist")
        self.model = model or f"replay:{self.path.name}"
        self.by_prompt: dict[str, CachedAnswer] = {}
        self.by_text: dict[str, CachedAnswer] = {}
        self.misses = 0
        self._local = threading.local()
        rows = list(_read_rows(self.path))
        for n, row in enumerate(rows, 1):
            answer = next((row[c] for c in _ANSWER_COLS if row.get(c) is not None), None)
            if answer is None:
                raise DataError(
                    f"{self.path} row {n} has no answer column (one of {', '.join(_ANSWER_COLS)})"
                )
            if not row.get("prompt") and not row.get("text"):
                raise DataError(f"{self.path} row {n} has neither a 'prompt' nor a 'text' column")
            rec = CachedAnswer(
                LLMReply(
                    text=str(answer),
                    prompt_tokens=_int_or_none(row.get("prompt_tokens")),
                    completion_tokens=_int_or_none(row.get("completion_tokens")),
                    model=self.model,
                ),
                _float_or_none(row.get("latency_s")),
            )
            if row.get("prompt"):
                self.by_prompt[str(row["prompt"])] = rec
            if row.get("text"):
                self.by_text[str(row["text"])] = rec
        if not rows:
            raise DataError(f"replay file {self.path} holds no answers")

    @property
    def last_latency_s(self) -> float | None:
        """The recorded latency of the answer this thread just got (``None`` if unrecorded)."""
        return getattr(self._local, "latency", None)

    def lookup(self, request: LLMRequest) -> CachedAnswer | None:
        """The recorded answer for ``request``, or ``None``."""
        return self.by_prompt.get(request.prompt) or self.by_text.get(request.text)

    def __call__(self, request: LLMRequest) -> LLMReply:
        rec = self.lookup(request)
        if rec is None:
            self.misses += 1
            self._local.latency = None
            raise LLMError(
                f"no recorded answer in {self.path.name} for this prompt or input "
                f"({request.text[:60]!r}...): record it, or run against a model",
                retryable=False,
            )
        self._local.latency = rec.latency_s
        return rec.reply


class ColumnReplayLLM:
    """A large model's recorded answers, one column of a labelled data file, as an LLM.

    The answer for a request is the value recorded for its input text (``request.text``, the
    input before any prompt or Prompt Transferring is applied). It replays *one* prompt: the
    one the answers were recorded with. A method that changes what the model is asked (soft or
    hard pruning, DS+) cannot be replayed and must not be scored with it.

    Args:
        answers: input text -> recorded answer (``""`` where the model gave no label).
        model: the name answers are reported under.

    Example:
        >>> llm = ColumnReplayLLM({"a fine film": "positive", "dull": ""}, model="gpt-3.5")
        >>> llm(LLMRequest(text="a fine film", prompt="...", candidates=("negative", "positive")))
        LLMReply(text='positive', ...)  # doctest: +SKIP
    """

    def __init__(self, answers: dict[str, str], model: str) -> None:
        if not answers:
            raise DataError(f"no recorded answers for {model}")
        self.answers = answers
        self.model = model
        self.misses = 0
        self.empty = 0

    @classmethod
    def from_data(
        cls,
        source: str | Path,
        column: str,
        *,
        text_col: str | list[str] | None = None,
        encoding: str = "utf-8",
    ) -> ColumnReplayLLM:
        """The answers in ``column`` of a bundled data set (``"mr"``) or a CSV/TSV/JSONL file.

        Raises:
            DataError: a missing file or column.
        """
        answers = read_text_column(source, column, text_col=text_col, encoding=encoding)
        name = Path(str(source)).name
        return cls(answers, model=f"recorded:{name}:{column}")

    @property
    def last_latency_s(self) -> float | None:
        """Recorded answers carry no latency."""
        return None

    def recorded(self, text: str) -> str | None:
        """The recorded answer for an input (``""``: none given; ``None``: not in the file)."""
        return self.answers.get(text)

    def __call__(self, request: LLMRequest) -> LLMReply:
        answer = self.answers.get(request.text)
        if answer is None:
            self.misses += 1
            raise LLMError(
                f"no recorded answer in {self.model} for this input ({request.text[:60]!r}): "
                "the column holds answers only for the rows of its own file",
                retryable=False,
            )
        if not answer:
            self.empty += 1
            answer = NO_RECORDED_ANSWER
        return LLMReply(text=answer, model=self.model)


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as fh:
        if suffix in (".jsonl", ".ndjson"):
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {n} is not JSON: {exc}") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {n} is not a JSON object")
                yield row
        elif suffix in (".csv", ".tsv"):
            yield from csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"replay file {path} must be .jsonl, .csv or .tsv")


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None
