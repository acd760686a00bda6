"""Reading labelled text: CSV, TSV (with or without header), JSONL, and the bundled data sets.

``read_dataset("amazon-mds", split="train")`` finds ``../shared/data`` (or ``$DATASHUNT_DATA_DIR``);
any file path works with explicit column names.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

__all__ = [
    "KNOWN_DATASETS",
    "Dataset",
    "DatasetSpec",
    "Example",
    "find_data_dir",
    "read_dataset",
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


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one of the bundled data sets."""

    files: Mapping[str, str]
    text_cols: tuple[str, ...]
    label_col: str
    label_names: Mapping[str, str] = field(default_factory=dict)
    split_col: str | None = None
    group_col: str | None = None
    header: bool = True
    # For a file that holds two splits (AG News dev.tsv is our train *and* dev pool): the
    # split taken by a hash of the text, so it is fixed and independent of row order.
    hash_splits: Mapping[str, tuple[int, int]] = field(default_factory=dict)


_SENTIMENT = {"0": "negative", "1": "positive"}
KNOWN_DATASETS: dict[str, DatasetSpec] = {
    "amazon-mds": DatasetSpec(
        files={s: "amazon-mds/reviews.csv" for s in ("train", "dev", "test")},
        text_cols=("title", "text"),
        label_col="label",
        label_names=_SENTIMENT,
        split_col="split",
        group_col="domain",
    ),
    "sst2": DatasetSpec(
        files={s: f"sst2/{s}.tsv" for s in ("train", "dev", "test")},
        text_cols=("sentence",),
        label_col="label",
        label_names=_SENTIMENT,
    ),
    "agnews": DatasetSpec(
        files={"train": "agnews/dev.tsv", "dev": "agnews/dev.tsv", "test": "agnews/test.tsv"},
        text_cols=("text",),
        label_col="label",
        header=False,
        hash_splits={"train": (0, 8), "dev": (8, 10)},
    ),
}


def find_data_dir() -> Path:
    """``$DATASHUNT_DATA_DIR``, else the first ``shared/data`` beside the working directory or
    the source tree.

    Raises:
        DataError: saying where it looked and how to point at the data.
    """
    env = os.environ.get("DATASHUNT_DATA_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *Path.cwd().parents[:2], *here.parents[:4]):
        candidates.append(base.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    raise DataError(
        "the bundled data folder was not found (looked at "
        + ", ".join(str(c) for c in candidates[:4])
        + ", ...). Set DATASHUNT_DATA_DIR to the folder holding amazon-mds/, sst2/, agnews/, "
        "or pass a CSV/TSV/JSONL path with --text-col and --label-col"
    )


def _hash_bucket(text: str, buckets: int = 10) -> int:
    return int(hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest(), 16) % buckets


def _hash_key(text: str, i: int) -> str:
    return hashlib.sha1(f"{i}:{text}".encode(), usedforsecurity=False).hexdigest()


def _rows(path: Path, header: bool, fieldnames: Sequence[str] | None) -> Iterator[dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                    except (json.JSONDecodeError, AttributeError) as exc:
                        raise DataError(f"{path}:{n} is not a JSON object: {exc}") from exc
        return
    delimiter = "\t" if suffix in (".tsv", ".tab") else ","
    with path.open(encoding="utf-8", newline="") as fh:
        if header:
            yield from csv.DictReader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
        else:
            names = list(fieldnames or ("text", "label"))
            for row in csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE):
                yield dict(zip(names, row, strict=False))


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
) -> Dataset:
    """Read labelled examples from a bundled data set name or a file.

    Args:
        source: ``"amazon-mds"``, ``"sst2"``, ``"agnews"``, or a ``.csv``/``.tsv``/``.jsonl`` path.
        split: for a bundled set, ``"train"``, ``"dev"`` or ``"test"``; for a file with a
            ``split_col``, the value to keep.
        text_col: the text column, or several joined with ". " (e.g. ``["title", "text"]``);
            a comma-separated string also works.
        label_col: the label column.
        label_names: maps raw label values to names (``{"0": "negative"}``).
        labels: the label set and its order; default: sorted label names seen. A row whose label
            is not in it is an error.
        split_col: the column holding the split name.
        group_col: the column naming a slice (for per-group reports).
        header: whether a CSV/TSV file has a header row (without one, columns are text, label).
        limit: keep at most this many examples.

    Raises:
        DataError: for a missing file, missing columns, unknown labels or empty result.
    """
    name = str(source)
    hash_range: tuple[int, int] | None = None
    spec = KNOWN_DATASETS.get(name)
    if spec is not None:
        if split is None or split not in spec.files:
            raise DataError(f"{name} needs split= one of {sorted(spec.files)}, got {split!r}")
        path = find_data_dir() / spec.files[split]
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
    cols = (
        tuple(c.strip() for c in text_col.split(","))
        if isinstance(text_col, str)
        else tuple(text_col)
    )
    fieldnames = (*cols, label_col) if not header else None
    names = dict(label_names or {})
    examples: list[Example] = []
    for n, row in enumerate(_rows(path, header, fieldnames), 1):
        missing = [c for c in (*cols, label_col) if c not in row]
        if missing:
            raise DataError(f"{path} row {n} has no column(s) {missing}; columns: {sorted(row)}")
        if split_col and split is not None and row.get(split_col) != split:
            continue
        text = ". ".join(row[c].strip() for c in cols if row[c] and row[c].strip())
        if hash_range is not None and not hash_range[0] <= _hash_bucket(text) < hash_range[1]:
            continue
        if not text:
            continue
        raw = row[label_col].strip()
        group = row.get(group_col) if group_col else None
        examples.append(Example(text, names.get(raw, raw), group))
    if limit is not None and len(examples) > limit:
        # Files are often sorted by label: a hash order gives a fixed, mixed sample instead.
        keep = sorted(range(len(examples)), key=lambda i: _hash_key(examples[i].text, i))[:limit]
        examples = [examples[i] for i in sorted(keep)]
    if not examples:
        raise DataError(f"no examples read from {path} (split={split!r})")
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
    return Dataset(tuple(examples), label_set, name if spec else path.name)
