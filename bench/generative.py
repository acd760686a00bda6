"""Evidence for the generative gate: which sequence confidence separates right answers from
wrong ones, and the accuracy against large-model calls.

Free-form questions are built from the labelled data in ``../shared/data`` ("what is the
sentiment of this review?", "which emotion ...?", "what is the topic ...?"), the gold label as
the acceptable answer. The small model is the embedded SmolLM2 (or any OpenAI-compatible URL);
the large one is replayed from the recorded answers (mr ``llm_label``: gpt-3.5-turbo; isear
``gpt35_label``: gpt-3.5-turbo-1106). The small answers are saved (with a reference to their
question, never the data set's text), so that ``--replay`` redoes every figure without a
model::

    python -m bench.generative --per-task 60 --out bench/results/generative
    python -m bench.generative --replay bench/results/generative/answers.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from datashunt.benchmark.baselines import route_lowest
from datashunt.data import find_data_dir
from datashunt.generative.confidence import (
    MEASURES,
    SequenceConfidence,
    auroc,
    sequence_confidence,
)
from datashunt.generative.policy import acceptable
from datashunt.types import Message

__all__ = [
    "OPTIONS",
    "Question",
    "all_questions",
    "curve",
    "evaluate",
    "load_answers",
    "load_questions",
    "main",
]

T = TypeVar("T")

_EMOTIONS = "joy, sadness, anger, guilt, shame, fear, disgust"
_TOPICS = "World, Sports, Business, Sci/Tech"
#: Each task's answers: an answer naming another one besides the gold label is wrong.
OPTIONS = {
    "sentiment (mr)": ("positive", "negative"),
    "emotion (isear)": tuple(_EMOTIONS.split(", ")),
    "topic (agnews)": tuple(_TOPICS.split(", ")),
}


@dataclass(frozen=True)
class Question:
    """One free-form question with its acceptable answers and the recorded large answer
    (``""``: the large model's answer was not a label; ``None``: nothing was recorded)."""

    task: str
    prompt: str
    accepted: tuple[str, ...]
    large_answer: str | None
    ref: int = 0


def _sample(rows: list[T], n: int, seed: int) -> list[T]:
    idx = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in idx]


def all_questions(data_dir: str | Path) -> dict[str, list[Question]]:
    """Every test-split question of each task, in file order (a question's ``ref`` is its
    index here)."""
    base = Path(data_dir)
    with open(base / "mr" / "mr.csv", encoding="utf-8", newline="") as fh:
        mr = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    with open(base / "isear" / "isear.csv", encoding="utf-8", newline="") as fh:
        isear = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    with open(base / "agnews" / "test.tsv", encoding="utf-8", newline="") as fh:
        agnews = [row for row in csv.reader(fh, delimiter="\t") if len(row) == 2]
    sentiment = [
        Question(
            "sentiment (mr)",
            "What is the sentiment of this movie review, positive or negative? "
            f"Answer in one word.\nReview: {r['text']}",
            (r["label"],),
            r["llm_label"],
            i,
        )
        for i, r in enumerate(mr)
    ]
    emotion = [
        Question(
            "emotion (isear)",
            f"Which emotion did the writer feel ({_EMOTIONS})? Answer in one word.\n"
            f"Text: {r['text']}",
            (r["label"],),
            r["gpt35_label"],
            i,
        )
        for i, r in enumerate(isear)
    ]
    topic = [
        Question(
            "topic (agnews)",
            f"What is the topic of this news ({_TOPICS})? Answer in one word.\nNews: {text}",
            ("Sci/Tech", "science", "technology", "tech") if label == "Sci/Tech" else (label,),
            None,
            i,
        )
        for i, (text, label) in enumerate(agnews)
    ]
    return {q[0].task: q for q in (sentiment, emotion, topic)}


def load_questions(data_dir: str | Path, per_task: int, seed: int = 0) -> list[Question]:
    """``per_task`` test-split questions from mr, isear and agnews (agnews has no recorded
    large answer: it counts for the AUROC, not for the curve)."""
    return [q for qs in all_questions(data_dir).values() for q in _sample(qs, per_task, seed)]


def load_answers(path: str | Path, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Saved answers (``task``, ``ref``, ``answer``, ``logprobs``: no data set text is saved)
    joined with their questions, read again from the data folder."""
    questions = all_questions(data_dir if data_dir is not None else find_data_dir())
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            saved = json.loads(line)
            out.append({**asdict(questions[saved["task"]][saved["ref"]]), **saved})
    return out


def curve(
    scores: Sequence[float], small_ok: Sequence[bool], large_ok: Sequence[bool], steps: int = 10
) -> list[dict[str, float]]:
    """Accuracy at each large-call rate 0, 1/steps, ..., 1: the least confident small answers
    go to the large model first."""
    s = np.asarray(scores, dtype=float)
    a, b = np.asarray(small_ok, dtype=bool), np.asarray(large_ok, dtype=bool)
    rows = []
    for k in range(steps + 1):
        n_large = round(len(s) * k / steps)
        acc = float(route_lowest(s, a, b, n_large).mean()) if len(s) else 0.0
        rows.append({"large_rate": n_large / max(len(s), 1), "accuracy": acc})
    return rows


def evaluate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures from saved answers (``task``, ``answer``, ``logprobs``, ``accepted``,
    ``large_answer`` per question)."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    by_task["all"] = list(records)
    out: dict[str, Any] = {"tasks": {}}
    for task, rows in by_task.items():
        confs: list[SequenceConfidence | None] = []
        for r in rows:
            try:
                confs.append(sequence_confidence(r["logprobs"]))
            except Exception:  # no logprobs: lowest confidence, goes to the large model first
                confs.append(None)
        ok = [acceptable(r["answer"], r["accepted"], OPTIONS.get(r["task"], ())) for r in rows]
        aurocs = {m: auroc([c.score(m) if c else 0.0 for c in confs], ok) for m in MEASURES}
        entry: dict[str, Any] = {
            "n": len(rows),
            "small_accuracy": float(np.mean(ok)),
            "auroc": aurocs,
        }
        if task != "all" and any(r["large_answer"] is not None for r in rows):
            # a large answer that was not a label (recorded empty) counts as wrong
            large_ok = [
                acceptable(r["large_answer"] or "", r["accepted"], OPTIONS.get(r["task"], ()))
                for r in rows
            ]
            entry["large_accuracy"] = float(np.mean(large_ok))
            entry["curve"] = {
                m: curve([c.score(m) if c else 0.0 for c in confs], ok, large_ok) for m in MEASURES
            }
        out["tasks"][task] = entry
    return out


def _ask_all(
    questions: Sequence[Question], url: str | None, budget_s: float
) -> list[dict[str, Any]]:
    from datashunt.llm import LLMServer, OpenAICompatLLM

    local = url is None
    records: list[dict[str, Any]] = []
    with LLMServer(n_threads=1, n_ctx=1024) if local else nullcontext(None) as server:
        base = server.base_url if server is not None else str(url)
        name = server.model_name if server is not None else "small"
        llm = OpenAICompatLLM(base, name, max_tokens=12, top_logprobs=1, timeout=120)
        t0 = time.perf_counter()
        for i, q in enumerate(questions):
            if time.perf_counter() - t0 > budget_s:
                print(f"time budget spent after {i} questions", file=sys.stderr)
                break
            reply = llm.chat([Message("user", q.prompt)])
            records.append(
                {
                    "task": q.task,
                    "ref": q.ref,  # the question is read again from the data, never saved
                    "answer": reply.text,
                    "logprobs": [
                        {"token": t.get("token"), "logprob": t.get("logprob")}
                        for t in reply.logprobs or []
                    ],
                }
            )
        print(f"{len(records)} answers in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return records


def _markdown(figures: dict[str, Any]) -> str:
    lines = ["| task | n | small acc | " + " | ".join(f"AUROC {m}" for m in MEASURES) + " |"]
    lines.append("|" + " --- |" * (3 + len(MEASURES)))
    for task, e in figures["tasks"].items():
        cells = [f"{e['auroc'][m]:.3f}" if e["auroc"][m] is not None else "-" for m in MEASURES]
        lines.append(
            f"| {task} | {e['n']} | {e['small_accuracy']:.3f} | " + " | ".join(cells) + " |"
        )
    for task, e in figures["tasks"].items():
        if "curve" not in e:
            continue
        lines += [
            "",
            f"{task}: accuracy by large-model call rate (large alone {e['large_accuracy']:.3f})",
            "",
        ]
        lines.append("| large-call rate | " + " | ".join(MEASURES) + " | at random |")
        lines.append("|" + " --- |" * (2 + len(MEASURES)))
        small, large = e["small_accuracy"], e["large_accuracy"]
        for k, row in enumerate(e["curve"][MEASURES[0]]):
            accs = [f"{e['curve'][m][k]['accuracy']:.3f}" for m in MEASURES]
            rate = row["large_rate"]
            at_random = f"{small + rate * (large - small):.3f}"  # the expected accuracy
            lines.append(f"| {rate:.0%} | " + " | ".join([*accs, at_random]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.generative``: ask, or replay, then write the figures."""
    p = argparse.ArgumentParser(prog="python -m bench.generative", description=__doc__)
    p.add_argument("--data", help="the shared data folder (default: found as read_dataset does)")
    p.add_argument("--per-task", type=int, default=60, help="questions per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--url", help="the small model's OpenAI-compatible URL (default: SmolLM2)")
    p.add_argument("--budget-s", type=float, default=600.0, help="stop asking after this long")
    p.add_argument("--replay", help="saved answers (answers.jsonl): no model is run")
    p.add_argument("--out", default="bench/results/generative", help="output folder")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else find_data_dir()
    if not args.replay:
        questions = load_questions(data, args.per_task, args.seed)
        saved = _ask_all(questions, args.url, args.budget_s)
        with open(out / "answers.jsonl", "w", encoding="utf-8") as fh:
            for r in saved:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    records = load_answers(args.replay or out / "answers.jsonl", data)
    figures = evaluate(records)
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    table = _markdown(figures)
    (out / "figures.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
