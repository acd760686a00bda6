"""The joints a new user's run hit (issue 25, Build item 2): a store export trains a gate
(unparsed answers skipped and counted, a seeded dev part held out), the export keeps the chain's
``{text}`` input, and ``distill`` / ``loop`` take an embedding gate and records older than it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datashunt import CallRecord, CallStore, read_dataset
from datashunt.cli import main

LABELS = ("negative", "positive")
KEYS = {"good": "positive", "great": "positive", "bad": "negative", "awful": "negative"}
FILLER = ["the", "a", "it", "is", "was", "this", "product", "book", "movie", "very"]
PROMPT = "system: You classify reviews.\nuser: Review: {}\nAnswer positive or negative."


def reviews(seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` distinct texts, each with one keyword that decides its label."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    while len(out) < n:
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(2, 5)))]
        kw = str(rng.choice(sorted(KEYS)))
        words.insert(int(rng.integers(0, len(words) + 1)), kw)
        out.setdefault(" ".join(words), KEYS[kw])
    return list(out.items())


def chain_record(text: str, label: str | None, **kw: object) -> CallRecord:
    """An LLM call as the callback handler records a plain chain's: the ``{text}`` variable as
    ``input_text``, the templated prompt beside it; ``label=None`` is an unreadable answer."""
    body = PROMPT.format(text).split("\n", 1)[1].removeprefix("user: ")
    return CallRecord(
        route="llm",
        input_text=text,
        prompt=PROMPT.format(text),
        messages=[
            {"role": "system", "content": "You classify reviews."},
            {"role": "user", "content": body},
        ],
        response=label or "hard to say, maybe positive or negative",
        parsed_label=label,
        parse_ok=label is not None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int]:
    """A store export of 40 chain calls: 30 parsed, 6 unparsed, 2 failed, 2 gate-answered;
    returns the file and the number of parsed answers."""
    rows = reviews(0, 40)
    recs = [chain_record(t, lab) for t, lab in rows[:30]]
    recs += [chain_record(t, None) for t, _ in rows[30:36]]
    recs += [chain_record(t, None, error="LLMError: timeout") for t, _ in rows[36:38]]
    recs += [CallRecord(route="small", input_text=t, gate_label=lab) for t, lab in rows[38:]]
    CallStore(tmp_path / "calls.sqlite").add_many(recs)
    out = tmp_path / "export.jsonl"
    argv = ["store", "export", "--store", str(tmp_path / "calls.sqlite"), "--out", str(out)]
    assert main(argv) == 0
    assert "wrote 40 records" in capsys.readouterr().out
    return out, 30


def test_store_export_writes_the_chain_input_beside_the_prompt(
    exported: tuple[Path, int],
) -> None:
    path, _ = exported
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = {t for t, _ in reviews(0, 40)}
    assert {r["input_text"] for r in rows} == texts  # the {text} variable, not the prompt
    llm = [r for r in rows if r["route"] == "llm"]
    assert all(r["prompt"] == PROMPT.format(r["input_text"]) for r in llm)
    assert sum(r["parse_ok"] is True for r in llm) == 30  # what train-gate may learn from


def test_reading_an_export_skips_the_rows_without_an_llm_label(
    exported: tuple[Path, int],
) -> None:
    data = read_dataset(exported[0], text_col="input_text", label_col="parsed_label")
    assert dict(zip(data.texts, (e.label for e in data.examples), strict=True)) == dict(
        reviews(0, 40)[:30]
    )
    assert data.skipped == 10  # 6 unparsed, 2 failed calls, 2 answered by the gate


def test_reading_an_export_never_takes_an_unparsed_answer_as_a_label(tmp_path: Path) -> None:
    rows = [
        {"route": "llm", "input_text": "good", "parsed_label": "positive", "parse_ok": True},
        # whatever the label cell holds, parse_ok false means the answer was not readable
        {"route": "llm", "input_text": "bad", "parsed_label": "positive", "parse_ok": False},
        {"route": "llm", "input_text": "awful", "parsed_label": None, "parse_ok": None},
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_dataset(path, text_col="input_text", label_col="parsed_label")
    assert data.texts == ["good"] and data.skipped == 2
    plain = tmp_path / "gold.csv"  # gold data with a hole stays an error unless asked
    plain.write_text("text,label\ngood,positive\nbad,\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"row 2 has an empty label.*--skip-empty-labels"):
        read_dataset(plain)
    assert read_dataset(plain, skip_empty=True).skipped == 1


def test_train_gate_on_a_store_export_skips_unparsed_rows_and_holds_out_dev(
    exported: tuple[Path, int], tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, parsed = exported
    argv = ["train-gate", "--data", str(path), "--text-col", "input_text"]
    argv += ["--label-col", "parsed_label", "--kind", "embedding", "--backbone", str(tiny_bert)]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 0
    out, err = capsys.readouterr()
    assert "skipped 10 of 40 rows without a label" in err
    assert "held out 3 of 30 examples (10%, seed 0) as dev" in out
    rep = json.loads((tmp_path / "g" / "datashunt_train.json").read_text())["report"]
    assert (rep["n_train"], rep["n_dev"]) == (27, 3) and rep["dev_accuracy"] is not None
    # the share and the draw are the user's: another seed holds out other examples
    assert main([*argv, "--out", str(tmp_path / "h"), "--dev-share", "0.2", "--seed", "1"]) == 0
    assert "held out 6 of 30 examples (20%, seed 1)" in capsys.readouterr().out
    data = read_dataset(path, text_col="input_text", label_col="parsed_label")
    a, b = data.holdout(0.2, 0)[1], data.holdout(0.2, 1)[1]
    assert a == data.holdout(0.2, 0)[1] and set(a.texts) != set(b.texts)
    assert len(a) + len(data.holdout(0.2, 0)[0]) == parsed
