"""The (model, prompt) answer cache in the store's database, and replaying recorded answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from datashunt import CallStore, LLMError, LLMReply, LLMRequest
from datashunt.errors import DataError, StoreError
from datashunt.llm.cache import CachedLLM, LLMCache, prompt_key
from datashunt.llm.replay import ReplayLLM
from datashunt.llm.retry import RetryPolicy
from tests.conftest import FakeLLM


def _req(text: str, prompt: str | None = None) -> LLMRequest:
    return LLMRequest(text, None, {}, prompt or f"Classify: {text}\nAnswer:")  # type: ignore[arg-type]


def _reply(req: LLMRequest) -> LLMReply:
    return LLMReply("positive" if "good" in req.text else "negative", None, 12, 1, "m")


def test_the_key_depends_on_model_and_prompt() -> None:
    assert prompt_key("a", "p") == prompt_key("a", "p")
    assert prompt_key("a", "p") != prompt_key("b", "p")
    assert prompt_key("a", "p") != prompt_key("a", "p ")


def test_cached_llm_pays_once_and_keeps_the_cost(tmp_path: Path) -> None:
    fake = FakeLLM(_reply, delay=0.02)
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = CachedLLM(fake, cache, "m")
    first = llm(_req("good stuff"))
    paid = llm.last_latency_s
    assert paid is not None and paid >= 0.02
    again = llm(_req("good stuff"))
    assert len(fake.requests) == 1
    assert (llm.hits, llm.misses) == (1, 1)
    assert again.text == first.text == "positive"
    assert (again.prompt_tokens, again.completion_tokens) == (12, 1)
    assert llm.last_latency_s == pytest.approx(paid)  # a hit reports what the answer cost
    # another model, or another prompt, is a miss
    CachedLLM(fake, cache, "other")(_req("good stuff"))
    llm(_req("good stuff", prompt="another prompt"))
    assert len(fake.requests) == 3
    assert len(cache) == 3


def test_the_cache_survives_reopening_and_fresh_asks_again(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    fake = FakeLLM(_reply)
    CachedLLM(fake, LLMCache(path), "m")(_req("bad thing"))
    reopened = CachedLLM(fake, LLMCache(CallStore(path)), "m")
    assert reopened(_req("bad thing")).text == "negative"
    assert len(fake.requests) == 1
    fresh = CachedLLM(FakeLLM("positive"), LLMCache(path), "m", fresh=True)
    assert fresh(_req("bad thing")).text == "positive"
    assert fresh.misses == 1
    assert reopened(_req("bad thing")).text == "positive"  # overwritten
    assert len(LLMCache(path)) == 1


def test_an_empty_answer_is_never_cached(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "c.sqlite")
    CachedLLM(FakeLLM("   "), cache, "m")(_req("x"))
    assert len(cache) == 0


def test_the_cache_sits_beside_the_call_records(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    LLMCache(store).put("m", "p", LLMReply("positive"))
    assert store.stats()["records"] == 0  # the records table is untouched
    assert LLMCache(store).get("m", "p") is not None


def test_a_hash_only_store_keeps_no_prompts(tmp_path: Path) -> None:
    cache = LLMCache(CallStore(tmp_path / "c.sqlite", store_inputs="hash"))
    cache.put("m", "secret prompt", LLMReply("positive"), input_text="secret")
    assert cache.get("m", "secret prompt") is not None
    row = next(cache.rows())
    assert row["prompt"] is None and row["input_text"] is None
    with pytest.raises(StoreError, match="keeps no prompts"):
        cache.export_jsonl(tmp_path / "out.jsonl")


def test_export_then_replay_round_trip(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = CachedLLM(FakeLLM(_reply), cache, "m")
    for text in ("good one", "bad one"):
        llm(_req(text))
    out = tmp_path / "answers.jsonl"
    assert cache.export_jsonl(out) == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {r["answer"] for r in rows} == {"positive", "negative"}
    replay = ReplayLLM(out)
    assert replay(_req("good one")).text == "positive"
    assert replay.last_latency_s is not None
    # matched by the input when the prompt around it differs
    assert replay(_req("bad one", prompt="another template: bad one")).text == "negative"


def test_replay_from_csv_and_a_clear_miss(tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "response", "prompt_tokens"])
        writer.writerow(["good one", "positive", "7"])
    replay = ReplayLLM(path, model="gpt-x")
    reply = replay(_req("good one"))
    assert (reply.text, reply.prompt_tokens, reply.model) == ("positive", 7, "gpt-x")
    with pytest.raises(LLMError, match="no recorded answer") as err:
        replay(_req("never recorded"))
    assert err.value.retryable is False
    assert replay.misses == 1
    # the retry policy gives up at once on a miss
    out = RetryPolicy().call(replay, _req("never recorded"))
    assert out.attempts == 1 and isinstance(out.error, LLMError)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"text": "x"}\n', "no answer column"),
        ('{"answer": "x"}\n', "neither a 'prompt' nor a 'text'"),
        ("not json\n", "not JSON"),
        ("", "holds no answers"),
    ],
)
def test_bad_replay_files_say_what_is_wrong(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        ReplayLLM(path)


def test_missing_or_unknown_replay_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ReplayLLM(tmp_path / "nope.jsonl")
    other = tmp_path / "answers.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"\.jsonl, \.csv or \.tsv"):
        ReplayLLM(other)
