"""The named data sets ``read_dataset`` knows, and where their files are.

``example-reviews`` ships inside the package (``datashunt/example_data/reviews.csv``: 600
synthetic product reviews, negative/positive, with train/dev/test splits and a domain column),
so the README's quickstart runs right after ``pip install``. The others are the project's
evaluation sets, read from ``../shared/data`` or ``$DATASHUNT_DATA_DIR``; they do not ship.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

__all__ = [
    "EXAMPLE_DATASET",
    "KNOWN_DATASETS",
    "DatasetSpec",
    "dataset_path",
    "example_data_path",
    "find_data_dir",
]

#: The small example set that ships in the wheel.
EXAMPLE_DATASET = "example-reviews"
_PACKAGED = Path(__file__).resolve().parent / "example_data"


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one of the named data sets.

    Attributes:
        packaged: the files ship inside the package (else they are under :func:`find_data_dir`).
    """

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
    # Columns holding a large model's recorded answer per row (first: the default one).
    answer_cols: tuple[str, ...] = ()
    packaged: bool = False


_SENTIMENT = {"0": "negative", "1": "positive"}
KNOWN_DATASETS: dict[str, DatasetSpec] = {
    EXAMPLE_DATASET: DatasetSpec(
        files={s: "reviews.csv" for s in ("train", "dev", "test")},
        text_cols=("text",),
        label_col="label",
        split_col="split",
        group_col="domain",
        packaged=True,
    ),
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
    # Recorded answers of real large models ride along in extra columns (read them with
    # read_text_column, or replay them with datashunt.llm.ColumnReplayLLM).
    "mr": DatasetSpec(
        files={s: "mr/mr.csv" for s in ("train", "dev", "test")},
        text_cols=("text",),
        label_col="label",
        split_col="split",
        answer_cols=("llm_label",),
    ),
    "isear": DatasetSpec(
        files={s: "isear/isear.csv" for s in ("train", "dev", "test")},
        text_cols=("text",),
        label_col="label",
        split_col="split",
        answer_cols=("gpt35_label", "llama2_70b_label"),
    ),
}


def example_data_path() -> Path:
    """The shipped example CSV (``text,label,split,domain``), to copy or read directly."""
    return _PACKAGED / KNOWN_DATASETS[EXAMPLE_DATASET].files["train"]


def dataset_path(spec: DatasetSpec, file: str) -> Path:
    """Where one of ``spec``'s files is: inside the package, or under :func:`find_data_dir`."""
    return (_PACKAGED if spec.packaged else find_data_dir()) / file


def find_data_dir() -> Path:
    """``$DATASHUNT_DATA_DIR``, else the first ``shared/data`` beside the working directory or
    the source tree.

    Raises:
        DataError: saying where it looked, how to point at the data, and that the example set
            ships with the package.
    """
    env = os.environ.get("DATASHUNT_DATA_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *Path.cwd().parents[:2], *here.parents[:4]):
        candidates.append(base.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    named = ", ".join(n for n, s in KNOWN_DATASETS.items() if not s.packaged)
    raise DataError(
        "the evaluation data sets do not ship with datashunt and their folder was not found "
        "(looked at " + ", ".join(str(c) for c in candidates[:4]) + ", ...). Set "
        f"DATASHUNT_DATA_DIR to the folder holding {named}; or use the example set that ships, "
        f"--data {EXAMPLE_DATASET} (read_dataset({EXAMPLE_DATASET!r}, split='train')); or pass "
        "your own CSV/TSV/JSONL path with --text-col and --label-col"
    )
