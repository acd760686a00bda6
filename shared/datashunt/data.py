"""Reading labelled text: CSV, TSV (with or without header), JSONL, and the named data sets.

``read_dataset("example-reviews", split="train")`` reads the example set that ships in the
package; ``read_dataset("amazon-mds", split="train")`` finds ``../shared/data`` (or
``$DATASHUNT_DATA_DIR``); any file path works with explicit column names. The names and their
files: :mod:`datashunt.catalog`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import (
    EXAMPLE_DATASET,
    KNOWN_DATASETS,
    DatasetSpec,
    dataset_path,
    example_data_path,
    find_data_dir,
)
from .errors import DataError

__all__ = [
    "EXAMPLE_DATASET",
    "KNOWN_DATASETS",
    "Dataset",
    "DatasetSpec",
    "Example",
    "decode_bytes",
    "example_data_path",
    "find_data_dir",
    "read_dataset",
    "read_text_column",
]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Example:
    """One labelled text; ``group`` is an optional slice name (e.g. a product category)."""

    text: str
    label: str
    group: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Labelled examples with their label set (in a fixed order)."""

    examples: tuple[Example, ...]
    labels: tuple[str, ...]
    name: str = ""
    #: rows left out for want of a label (``read_dataset(skip_empty=...)``)
    skipped: int = 0

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def y(self) -> list[int]:
        """Label indices into :attr:`labels`."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        return [index[e.label] for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def head(self, n: int) -> Dataset:
        """The first ``n`` examples (same label set)."""
        return Dataset(self.examples[:n], self.labels, self.name)

    def holdout(self, share: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """``(rest, held)``: a seeded random ``share`` of the examples held out (at least one
        each side when there are two or more), both in file order, same label set.

        Raises:
            DataError: ``share`` is not in (0, 1).
        """
        if not 0.0 < share < 1.0:
            raise DataError(f"the held-out share must be in (0, 1), got {share}")
        n = len(self.examples)
        k = min(max(round(share * n), 1), n - 1) if n > 1 else 0
        held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
        parts = (
            tuple(e for i, e in enumerate(self.examples) if i not in held),
            tuple(e for i, e in enumerate(self.examples) if i in held),
        )
        rest, dev = (Dataset(p, self.labels, self.name) for p in parts)
        return rest, dev


def _hash_bucket(text: str, buckets: int = 10) -> int:
    return int(hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest(), 16) % buckets


def _hash_key(text: str, i: int) -> str:
    return hashlib.sha1(f"{i}:{text}".encode(), usedforsecurity=False).hexdigest()


def decode_bytes(raw: bytes, encoding: str, where: str) -> str:
    """``raw`` decoded as ``encoding``; a bad byte is reported with its offset in ``where``.

    Raises:
        DataError: an unknown encoding, or bytes that are not ``encoding`` (with the offset
            and line of the first one, and how to give the right encoding).
    """
    try:
        return raw.decode(encoding)
    except LookupError as exc:
        raise DataError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1, cp1252") from exc
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{where} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at byte offset "
            f"{exc.start} (line {line}) cannot be decoded ({exc.reason}); give its encoding "
            "(on the command line --encoding latin-1 or cp1252; encoding=... in Python) or "
            "convert it to UTF-8"
        ) from exc


def _rows(
    path: Path, header: bool, fieldnames: Sequence[str] | None, encoding: str = "utf-8"
) -> Iterator[dict[str, str]]:
    suffix = path.suffix.lower()
    text = decode_bytes(path.read_bytes(), encoding, str(path))
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(io.StringIO(text), 1):
            if line.strip():
                try:
                    yield {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise DataError(f"{path}:{n} is not a JSON object: {exc}") from exc
        return
    delimiter = "\t" if suffix in (".tsv", ".tab") else ","
    fh = io.StringIO(text, newline="")
    if header:
        yield from csv.DictReader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    else:
        names = list(fieldnames or ("text", "label"))
        for row in csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE):
            yield dict(zip(names, row, strict=False))


def _joined(row: Mapping[str, str | None], cols: Sequence[str]) -> str:
    """The example text of a row: its text columns joined with ". " (the one rule for all)."""
    return ". ".join(v.strip() for c in cols if (v := row.get(c)) and v.strip())


def _text_cols(text_col: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(text_col, str):
        return tuple(c.strip() for c in text_col.split(","))
    return tuple(text_col)


def read_text_column(
    source: str | Path,
    column: str,
    *,
    text_col: str | Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> dict[str, str]:
    """Input text -> the value of ``column`` (e.g. a model's recorded answer), for every row
    of a bundled data set or a file, whatever its split.

    The text is built as :func:`read_dataset` builds it, so ``Example.text`` finds its row.
    An empty cell stays ``""``; a text seen twice keeps its first non-empty value.

    Args:
        source: ``"mr"``, ``"isear"`` (or another bundled name), or a ``.csv``/``.tsv``/
            ``.jsonl`` path.
        column: the column to read (``"llm_label"``, ``"gpt35_label"``, ...).
        text_col: the text column(s) of a file (default ``"text"``; a bundled set knows its own).
        encoding: the file's text encoding.

    Raises:
        DataError: a missing file, or a ``column`` the file does not have (naming the columns
            it has).
    """
    spec = KNOWN_DATASETS.get(str(source))
    if spec is not None:
        files = sorted(set(spec.files.values()))
        paths = [dataset_path(spec, f) for f in files]
        cols, header = spec.text_cols, spec.header
    else:
        paths = [Path(source).expanduser()]
        cols, header = _text_cols(text_col or "text"), True
    out: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        for n, row in enumerate(_rows(path, header, None, encoding), 1):
            if column not in row:
                raise DataError(
                    f"{path} row {n} has no column {column!r} to read answers from; "
                    f"columns: {sorted(row)}"
                )
            text = _joined(row, cols)
            if text and not out.get(text):
                out[text] = (row[column] or "").strip()
    return out


def read_dataset(
    source: str | Path,
    *,
    split: str | None = None,
    text_col: str | Sequence[str] | None = None,
    label_col: str | None = None,
    label_names: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
    split_col: str | None = None,
    group_col: str | None = None,
    header: bool = True,
    limit: int | None = None,
    encoding: str = "utf-8",
    skip_empty: bool | None = None,
) -> Dataset:
    """Read labelled examples from a bundled data set name or a file.

    Args:
        source: a named set (``"example-reviews"``, which ships; ``"amazon-mds"``, ``"sst2"``,
            ``"agnews"``, ``"mr"``, ``"isear"``), or a ``.csv``/``.tsv``/``.jsonl`` path.
        split: for a bundled set, ``"train"``, ``"dev"`` or ``"test"``; for a file with a
            ``split_col``, the value to keep.
        text_col: the text column, or several joined with ". " (e.g. ``["title", "text"]``);
            a comma-separated string also works. Default ``text`` (a store export's rows:
            ``input_text``, with ``parsed_label`` as the label column).
        label_col: the label column.
        label_names: maps raw label values to names (``{"0": "negative"}``).
        labels: the label set and its order; default: sorted label names seen. A row whose label
            is not in it is an error.
        split_col: the column holding the split name.
        group_col: the column naming a slice (for per-group reports).
        header: whether a CSV/TSV file has a header row (without one, columns are text, label).
        limit: keep at most this many examples.
        encoding: the file's text encoding (``"latin-1"``, ``"cp1252"``, ``"utf-8-sig"``, ...).
        skip_empty: leave out rows without a label and count them (:attr:`Dataset.skipped`)
            instead of raising; default: only for a ``datashunt store export`` file, whose
            empty or unparsed (``parse_ok`` false) answers are never labels.

    Raises:
        DataError: for a missing file, bytes that are not ``encoding`` (with their offset),
            missing columns, an empty label (with its row), unknown labels or empty result.
    """
    name = str(source)
    hash_range: tuple[int, int] | None = None
    export = text_col is None and label_col is None  # a `datashunt store export` file, maybe
    spec = KNOWN_DATASETS.get(name)
    if spec is not None:
        if split is None or split not in spec.files:
            raise DataError(f"{name} needs split= one of {sorted(spec.files)}, got {split!r}")
        path = dataset_path(spec, spec.files[split])
        text_col = text_col or spec.text_cols
        label_col = label_col or spec.label_col
        label_names = label_names or spec.label_names
        split_col = spec.split_col
        group_col = group_col or spec.group_col
        header = spec.header
        hash_range = spec.hash_splits.get(split)
    else:
        path = Path(source).expanduser()
        if path.suffix.lower() not in (".csv", ".tsv", ".tab", ".jsonl", ".ndjson"):
            raise DataError(
                f"{name!r} is neither a bundled data set ({', '.join(KNOWN_DATASETS)}) nor a "
                ".csv/.tsv/.jsonl file"
            )
        text_col = text_col or "text"
        label_col = label_col or "label"
    if not path.is_file():
        raise DataError(
            f"data file {path} does not exist. Pass an existing CSV/TSV/JSONL path, or set "
            "DATASHUNT_DATA_DIR to the folder that holds the bundled data sets"
        )
    cols = _text_cols(text_col)
    fieldnames = (*cols, label_col) if not header else None
    names = dict(label_names or {})
    examples: list[Example] = []
    skipped = 0
    for n, row in enumerate(_rows(path, header, fieldnames, encoding), 1):
        if n == 1 and spec is None and export and {"input_text", "parse_ok"} <= row.keys():
            cols, label_col = ("input_text",), "parsed_label"  # the input and the LLM's answer
        missing = [c for c in (*cols, label_col) if c not in row]
        if missing:
            raise DataError(f"{path} row {n} has no column(s) {missing}; columns: {sorted(row)}")
        if split_col and split is not None and row.get(split_col) != split:
            continue
        text = _joined(row, cols)
        if hash_range is not None and not hash_range[0] <= _hash_bucket(text) < hash_range[1]:
            continue
        if not text:
            continue
        raw = (row[label_col] or "").strip()
        # a store export's row: an unreadable LLM answer is never a label, whatever it holds
        unparsed = (row.get("parse_ok") or "").lower() == "false"
        if not raw or unparsed:
            if skip_empty or (skip_empty is None and "parse_ok" in row):
                skipped += 1
                continue
            raise DataError(
                f"{path} row {n} has an empty label (column {label_col!r}): give every row "
                "a label, or remove the row (`datashunt train-gate --skip-empty-labels` "
                "leaves such rows out)"
            )
        group = row.get(group_col) if group_col else None
        examples.append(Example(text, names.get(raw, raw), group))
    if limit is not None and len(examples) > limit:
        # Files are often sorted by label: a hash order gives a fixed, mixed sample instead.
        keep = sorted(range(len(examples)), key=lambda i: _hash_key(examples[i].text, i))[:limit]
        examples = [examples[i] for i in sorted(keep)]
    if not examples:
        left = f"; {skipped} rows without a label left out" if skipped else ""
        raise DataError(f"no examples read from {path} (split={split!r}){left}")
    seen = sorted({e.label for e in examples})
    if labels is None:
        # Named labels keep the mapping's order (0=negative before 1=positive); others sorted.
        label_set = tuple(dict.fromkeys((*names.values(), *seen)))
    else:
        label_set = tuple(labels)
        unknown = sorted(set(seen) - set(label_set))
        if unknown:
            raise DataError(
                f"{path} has labels {unknown} that are not in the label set {list(label_set)}"
            )
    return Dataset(tuple(examples), label_set, name if spec else path.name, skipped)
