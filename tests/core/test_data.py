from __future__ import annotations

import json
from pathlib import Path

import pytest

from datashunt import DataError, read_dataset


def test_csv_with_split_and_names(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text('split,title,body,y\ntrain,Nice,"Works, well",1\ndev,Bad,"Broke ""fast""",0\n')
    ds = read_dataset(
        f,
        text_col="title,body",
        label_col="y",
        split_col="split",
        split="train",
        label_names={"0": "neg", "1": "pos"},
    )
    assert ds.texts == ["Nice. Works, well"] and ds.labels == ("neg", "pos") and ds.y == [1]


def test_tsv_without_header_and_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "d.tsv"
    f.write_text('a "quoted" story\tSports\nmarkets fell\tBusiness\n')
    ds = read_dataset(f, header=False)
    assert ds.texts[0] == 'a "quoted" story' and ds.labels == ("Business", "Sports")
    j = tmp_path / "d.jsonl"
    j.write_text(
        json.dumps({"text": "hi", "label": "x"}) + "\n\n" + json.dumps({"text": "yo", "label": "y"})
    )
    assert read_dataset(j).labels == ("x", "y")
    j.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="not a JSON object"):
        read_dataset(j)


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="bundled data set"):
        read_dataset("imdb")
    f = tmp_path / "d.csv"
    f.write_text("text,label\nhello,zzz\n")
    with pytest.raises(DataError, match="not in the label set"):
        read_dataset(f, labels=["a", "b"])
    with pytest.raises(DataError, match="no column"):
        read_dataset(f, text_col="body")
    with pytest.raises(DataError, match="needs split"):
        read_dataset("amazon-mds")


def test_data_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\nfine film\t1\nbad film\t0\n")
    monkeypatch.setenv("DATASHUNT_DATA_DIR", str(tmp_path))
    ds = read_dataset("sst2", split="dev")
    assert ds.labels == ("negative", "positive") and ds.y == [1, 0]


def test_bundled_amazon_splits_and_limit() -> None:
    train = read_dataset("amazon-mds", split="train")
    assert len(train) == 5623 and train.labels == ("negative", "positive")
    assert {e.group for e in train.examples} == {
        "books",
        "dvd",
        "electronics",
        "kitchen_&_housewares",
    }
    sample = read_dataset("amazon-mds", split="test", limit=100)
    assert len(sample) == 100 and 20 < sum(sample.y) < 80  # a mixed sample, not the first rows


def test_bundled_agnews_hash_split_is_disjoint() -> None:
    tr = read_dataset("agnews", split="train")
    dev = read_dataset("agnews", split="dev")
    from datashunt.data import find_data_dir

    rows = (find_data_dir() / "agnews" / "dev.tsv").read_text(encoding="utf-8").count("\n")
    assert len(tr) + len(dev) == rows and not set(tr.texts) & set(dev.texts)
    assert 0.15 < len(dev) / rows < 0.25
    assert dev.labels == ("Business", "Sci/Tech", "Sports", "World")
