from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from datashunt import (
    CallStore,
    ConfigError,
    InputError,
    LLMError,
    LLMReply,
    PromptTransfer,
    Shunt,
    ShuntPolicy,
    ShuntResult,
)
from tests.conftest import ArrayGate, FakeLLM, KeywordGate

LABELS = ("negative", "positive")
TEXTS = ["good stuff", "no idea", "awful thing", "hmm maybe", "great"]  # 1 and 3 are uncertain


def _policy(**kw: object) -> ShuntPolicy:
    return ShuntPolicy(labels=LABELS, threshold=0.9, **kw)  # type: ignore[arg-type]


def test_confident_inputs_never_reach_the_llm(keyword_gate: KeywordGate) -> None:
    llm = FakeLLM()
    res = Shunt(keyword_gate, _policy(), llm=llm).run("a good good product")
    assert res.route == "small" and res.source == "small" and res.label == "positive"
    assert llm.requests == []


def test_uncertain_input_goes_to_llm_with_soft_hint(keyword_gate: KeywordGate) -> None:
    llm = FakeLLM("The answer is negative.")
    res = Shunt(keyword_gate, _policy(), llm=llm, noun="review").run("it arrived on time")
    assert res.route == "llm" and res.source == "llm" and res.label == "negative"
    prompt = llm.requests[0].prompt
    assert "A smaller model labelled this review" in prompt and "probability 0.50" in prompt
    assert "it arrived on time" in prompt
    assert res.decision.confidence == pytest.approx(0.5)


def test_batch_one_gate_pass_llm_only_for_uncertain(keyword_gate: KeywordGate) -> None:
    llm = FakeLLM("positive")
    results = Shunt(keyword_gate, _policy(), llm=llm).run_batch(TEXTS)
    assert keyword_gate.calls == 1
    assert sorted(q.text for q in llm.requests) == ["hmm maybe", "no idea"]
    routes = [r.route for r in results if isinstance(r, ShuntResult)]
    assert routes == ["small", "llm", "small", "llm", "small"]
    assert [r.label for r in results if isinstance(r, ShuntResult)] == [
        "positive",
        "positive",
        "negative",
        "positive",
        "positive",
    ]


def test_batch_respects_max_concurrency() -> None:
    gate = KeywordGate()
    llm = FakeLLM("negative", delay=0.05)
    Shunt(gate, _policy(), llm=llm, max_concurrency=3).run_batch([f"text {i}" for i in range(12)])
    assert len(llm.requests) == 12 and 1 < llm.peak <= 3


async def test_async_batch_concurrency_and_results() -> None:
    gate = KeywordGate()
    llm = FakeLLM("negative", delay=0.05)
    shunt = Shunt(gate, _policy(), allm=llm.acall, max_concurrency=4)
    results = await shunt.arun_batch([f"text {i}" for i in range(10)] + ["good"])
    assert len(llm.requests) == 10 and 1 < llm.peak <= 4
    assert [r.route for r in results] == ["llm"] * 10 + ["small"]  # type: ignore[union-attr]
    one = await shunt.arun("plain text")
    assert one.label == "negative"


async def test_async_falls_back_to_sync_llm_in_thread() -> None:
    llm = FakeLLM("positive")
    res = await Shunt(KeywordGate(), _policy(), llm=llm).arun("plain")
    assert res.source == "llm" and len(llm.requests) == 1


def test_hard_pruning_restricts_prompt_and_answer() -> None:
    labels = ("World", "Sports", "Business", "Sci/Tech")
    gate = ArrayGate(labels, [[0.01, 0.01, 0.6, 0.38]])
    policy = ShuntPolicy(labels=labels, threshold=0.9, class_recall={lab: 0.95 for lab in labels})
    llm = FakeLLM("Sports")
    res = Shunt(gate, policy, llm=llm, prompt_mode="hard").run("markets rallied")
    assert "one of: Business, Sci/Tech." in llm.requests[0].prompt
    assert res.decision.candidates == ("Business", "Sci/Tech")
    # "Sports" was pruned: the answer is treated as unparsed and the gate's label is used.
    assert res.source == "fallback" and res.label == "Business"
    assert res.parsed is not None and "not among the candidates" in res.parsed.reason


def test_llm_garbage_and_errors_fall_back_and_are_recorded(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")

    def answer(req):  # type: ignore[no-untyped-def]
        return TimeoutError("read timed out") if "slow" in req.text else "lorem ipsum"

    shunt = Shunt(KeywordGate(), _policy(), llm=FakeLLM(answer), store=store)
    garbage, failed = shunt.run_batch(["whatever", "slow one"])
    assert isinstance(garbage, ShuntResult) and garbage.source == "fallback"
    assert garbage.label in LABELS and garbage.error is None
    assert isinstance(failed, ShuntResult) and failed.source == "fallback"
    assert failed.error == "TimeoutError: read timed out"
    rows = {r.input_text: r for r in store.iter()}
    assert rows["slow one"].error == "TimeoutError: read timed out"
    assert rows["whatever"].parse_ok is False and rows["whatever"].response == "lorem ipsum"


def test_on_llm_error_raise_and_return_exceptions(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    llm = FakeLLM(lambda r: ConnectionError("refused") if "x" in r.text else "positive")
    shunt = Shunt(KeywordGate(), _policy(), llm=llm, on_llm_error="raise", store=store)
    with pytest.raises(LLMError, match="refused"):
        shunt.run("x marks")
    out = shunt.run_batch(["x marks", "fine", "", "good"], return_exceptions=True)
    assert isinstance(out[0], LLMError) and isinstance(out[2], InputError)
    assert isinstance(out[1], ShuntResult) and out[1].source == "llm"
    assert isinstance(out[3], ShuntResult) and out[3].route == "small"
    # every LLM call is recorded, the failed ones too (2 failures + 1 success), plus 1 small
    assert store.count(route="llm") == 3 and store.count(route="small") == 1


def test_bad_inputs_raise_clear_errors() -> None:
    shunt = Shunt(KeywordGate(), _policy(), llm=FakeLLM())
    with pytest.raises(InputError, match="single string"):
        shunt.run_batch("good")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="input 1 is empty"):
        shunt.run_batch(["good", ""])
    with pytest.raises(InputError, match="must be a str"):
        shunt.run(42)  # type: ignore[arg-type]
    small = Shunt(KeywordGate(), _policy(), llm=FakeLLM(), max_chars=10)
    with pytest.raises(InputError, match="over the limit"):
        small.run("good " * 10)


def test_100k_character_input_with_real_gate(tiny_bert: Path) -> None:
    from datashunt import HFGate

    gate = HFGate(tiny_bert)
    res = Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=0.0), llm=FakeLLM()).run(
        "good " * 20_000
    )
    assert res.route == "small" and res.label in gate.labels


def test_nan_probabilities_go_to_llm(caplog: pytest.LogCaptureFixture) -> None:
    gate = ArrayGate(LABELS, [[float("nan"), float("nan")]])
    llm = FakeLLM("negative")
    with caplog.at_level(logging.WARNING, logger="datashunt"):
        res = Shunt(gate, _policy(), llm=llm).run("anything")
    assert res.route == "llm" and res.label == "negative"
    assert "not finite" in res.decision.reason and "non-finite" in caplog.text


def test_wrong_shape_and_label_mismatch() -> None:
    from datashunt import GateError

    with pytest.raises(GateError, match="shape"):
        Shunt(ArrayGate(LABELS, [[1.0, 0.0, 0.0]]), _policy(), llm=FakeLLM()).run("x")
    with pytest.raises(ConfigError, match="differ from the gate"):
        Shunt(KeywordGate(), ShuntPolicy(labels=("a", "b")))


def test_single_label_set_always_small() -> None:
    gate = ArrayGate(("only",), [[1.0]])
    llm = FakeLLM()
    res = Shunt(gate, ShuntPolicy(labels=("only",), threshold=1.0), llm=llm).run("x")
    assert res.route == "small" and res.label == "only" and llm.requests == []


def test_no_llm_configured() -> None:
    with pytest.raises(ConfigError, match="no LLM configured"):
        Shunt(KeywordGate(), _policy()).run("uncertain")
    assert Shunt(KeywordGate(), _policy()).run("good").route == "small"  # no LLM needed


def test_llm_confidence_and_reply_metadata(tmp_path: Path) -> None:
    import math

    lp = [
        {
            "token": "negative",
            "logprob": math.log(0.8),
            "top_logprobs": [
                {"token": "negative", "logprob": math.log(0.8)},
                {"token": "positive", "logprob": math.log(0.2)},
            ],
        }
    ]
    reply = LLMReply("negative", logprobs=lp, prompt_tokens=30, completion_tokens=1, model="m1")
    store = CallStore(tmp_path / "c.sqlite")
    res = Shunt(KeywordGate(), _policy(), llm=FakeLLM(reply), store=store).run("neutral words")
    assert res.llm_confidence == pytest.approx(0.8)
    rec = next(store.iter(route="llm"))
    assert rec.llm_confidence == pytest.approx(0.8) and rec.model == "m1"
    assert rec.prompt_tokens == 30 and rec.llm_probs == pytest.approx(
        {"negative": 0.8, "positive": 0.2}
    )
    assert rec.gate_probs == pytest.approx({"negative": 0.5, "positive": 0.5})
    assert res.record_id == rec.id


def test_store_failure_does_not_lose_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CallStore(tmp_path / "c.sqlite")
    store.engine.dispose()
    (tmp_path / "c.sqlite").unlink()
    (tmp_path / "c.sqlite").mkdir()  # the database path is now a directory: writes fail
    res = Shunt(KeywordGate(), _policy(), llm=FakeLLM("positive"), store=store).run("neutral")
    assert res.label == "positive" and "store_error" in res.extra and res.record_id is None


def test_prompt_transfer_shortens_llm_input() -> None:
    gate = KeywordGate()
    llm = FakeLLM("positive")
    long = (
        "It was okay. " * 30
        + "Awful start though. Really great in the end. "
        + "Nothing more to add. " * 30
    )
    shunt = Shunt(gate, _policy(), llm=llm, transfer=PromptTransfer(gate, budget=12))
    res = shunt.run(long)
    assert res.route == "llm"
    sent = llm.requests[0].variables["text"]
    assert sent == "Awful start though. Really great in the end."


def test_from_dir(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "g"
    shutil.copytree(tiny_bert, d)
    ShuntPolicy(labels=LABELS, threshold=0.0, temperature=2.0).save(d)
    shunt = Shunt.from_dir(d)
    assert shunt.policy.threshold == 0.0 and shunt.gate.temperature == 2.0  # type: ignore[attr-defined]
    assert shunt.run("good").route == "small"


def test_decide_is_deterministic_and_typed(keyword_gate: KeywordGate) -> None:
    d = Shunt(keyword_gate, _policy()).decide(["good", "plain"])
    assert d[0].route == "small" and d[0].candidates == ("positive",)
    assert d[1].route == "llm" and d[1].candidates == LABELS
    assert np.isclose(sum(d[1].probabilities.values()), 1.0)
    assert d[0].top(1)[0][0] == "positive"


async def test_a_call_cancelled_after_it_was_sent_is_recorded(tmp_path: Path) -> None:
    import asyncio

    async def slow(_request: object) -> str:
        await asyncio.sleep(5)
        return "positive"

    store = tmp_path / "calls.sqlite"
    shunt = Shunt(KeywordGate(), ShuntPolicy(labels=LABELS, threshold=0.9), allm=slow, store=store)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(shunt.arun("it came"), timeout=0.2)
    (rec,) = CallStore(store).iter()
    assert rec.route == "llm" and rec.error is not None and "Cancelled" in rec.error
