"""The generative gate's core: sequence confidence, AUROC, acceptable answers, calibration, the
keep-or-escalate steps (retried, recorded) and the evidence script on saved answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.generative import curve, evaluate, main
from datashunt import Budget, CallStore, ConfigError, LLMError, LLMReply, MaxAccuracy
from datashunt.adapters import Message
from datashunt.generative import (
    GenerativePolicy,
    GenerativeShunt,
    acceptable,
    auroc,
    calibrate_generative,
    sequence_confidence,
)
from datashunt.llm.retry import RetryPolicy


def _lp(*values: float) -> list[dict[str, object]]:
    return [{"token": f"t{i}", "logprob": v} for i, v in enumerate(values)]


def test_sequence_confidence_measures() -> None:
    conf = sequence_confidence(_lp(-0.1, -2.0, -0.3))
    assert conf.tokens == 3 and conf.min_logprob == -2.0 and conf.first_logprob == -0.1
    assert conf.score("mean") == pytest.approx(math.exp(-2.4 / 3))
    assert conf.score("min") == pytest.approx(math.exp(-2.0))
    assert conf.score("joint") == pytest.approx(math.exp(-2.4))
    assert conf.score("first") == pytest.approx(math.exp(-0.1))
    with pytest.raises(LLMError, match="no token logprobs"):
        sequence_confidence([])
    with pytest.raises(ConfigError, match="measure must be one of"):
        conf.score("max")  # type: ignore[arg-type]


def test_auroc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(bool)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # with ties
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert auroc([0.1, 0.2], [True, True]) is None


def test_acceptable_answers() -> None:
    assert acceptable("The sentiment is Positive.", ["positive"])
    assert not acceptable("not positively sure", ["positive"])
    assert acceptable("Sci/Tech", ["Sci/Tech"]) and acceptable("sci tech news", ["Sci/Tech"])
    assert not acceptable("", ["joy"]) and not acceptable("joy", [""])
    assert not acceptable("positive or negative", ["positive"], others=["positive", "negative"])
    assert acceptable("It is positive.", ["positive"], others=["positive", "negative"])


def test_calibration_picks_the_best_measure_and_a_delta() -> None:
    # right answers: confident first token; wrong ones: one unlikely token late
    right = [sequence_confidence(_lp(-0.05, -0.1, -0.2)) for _ in range(30)]
    wrong = [sequence_confidence(_lp(-0.05, -3.0, -0.1)) for _ in range(10)]
    cal = calibrate_generative(right + wrong, [True] * 30 + [False] * 10, Budget(0.25))
    assert cal.policy.measure in ("mean", "min", "joint")
    assert cal.aurocs["min"] == 1.0 and cal.aurocs["first"] == 0.5
    assert cal.large_rate <= 0.25 and cal.small_accuracy == 0.75
    assert not cal.policy.accepts(wrong[0]) and cal.policy.accepts(right[0])
    fixed = calibrate_generative(
        right + wrong, [True] * 30 + [False] * 10, Budget(0.5), measure="first"
    )
    assert fixed.policy.measure == "first"
    best = calibrate_generative(right + wrong, [True] * 30 + [False] * 10, MaxAccuracy(0.95))
    assert best.large_rate == pytest.approx(0.25)


def test_policy_round_trip_and_errors(tmp_path: Path) -> None:
    policy = GenerativePolicy("min", 0.3, Budget(0.2).to_json(), {"min": 0.8})
    policy.save(tmp_path)
    assert GenerativePolicy.load(tmp_path) == policy
    with pytest.raises(ConfigError, match=r"threshold must be in \[0, 1\], got 1.5"):
        GenerativePolicy("mean", 1.5)
    with pytest.raises(ConfigError, match="calibrate first"):
        GenerativePolicy.load(tmp_path / "none")


class Small:
    model = "small-1"

    def __call__(self, messages: object) -> LLMReply:
        text = str(messages[-1].content)  # type: ignore[index]
        lp = -0.01 if "easy" in text else -2.0
        return LLMReply("small says " + text, logprobs=_lp(lp, lp), model="small-1")


class Large:
    model = "large-1"

    def __init__(self, fail: int = 0) -> None:
        self.calls, self.fail = 0, fail

    def __call__(self, messages: object) -> LLMReply:
        self.calls += 1
        if self.calls <= self.fail:
            raise LLMError("HTTP 503", status=503)
        return LLMReply("large says hi", model="large-1", prompt_tokens=9)


def test_keep_or_escalate_retried_and_recorded(tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    quick = RetryPolicy(attempts=3, base_delay=0.0, jitter=0.0)
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5), store=store, retry=quick)
    large = Large(fail=1)
    kept = shunt.run("easy one", small=Small(), large=large)
    assert kept.route == "small" and kept.text == "small says easy one" and large.calls == 0
    asked = shunt.run(
        [Message("system", "be brief"), Message("user", "hard one")], small=Small(), large=large
    )
    assert asked.route == "llm" and asked.source == "llm" and asked.text == "large says hi"
    assert asked.attempts == 2 and asked.judgement.score == pytest.approx(math.exp(-2.0))
    (rec,) = list(CallStore(store).iter())  # the escalation only (record_small is off)
    assert rec.id == asked.record_id and rec.model == "large-1" and rec.input_text == "hard one"
    assert rec.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hard one"},
    ]
    assert rec.response == "large says hi" and rec.extra is not None
    assert rec.extra["small_answer"] == "small says hard one" and rec.extra["attempts"] == 2
    assert rec.gate_confidence == pytest.approx(math.exp(-2.0))


def test_a_failed_large_call_falls_back_or_raises(tmp_path: Path) -> None:
    once = RetryPolicy(attempts=1)
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5), store=tmp_path / "c.db", retry=once)
    res = shunt.run("hard", small=Small(), large=Large(fail=5))
    assert res.source == "fallback" and res.text == "small says hard" and res.error
    strict = GenerativeShunt(GenerativePolicy("mean", 0.5), retry=once, on_llm_error="raise")
    with pytest.raises(LLMError, match="the large model call failed: LLMError: HTTP 503"):
        strict.run("hard", small=Small(), large=Large(fail=5))


def test_no_logprobs_goes_to_the_large_model() -> None:
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.0))
    res = shunt.run("x", small=lambda m: "no logprobs here", large=Large())
    assert res.route == "llm" and "logprobs" in res.judgement.reason


async def test_async_path() -> None:
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5))

    async def small(messages: object) -> LLMReply:
        return Small()(messages)

    async def large(messages: object) -> LLMReply:
        return Large()(messages)

    assert (await shunt.arun("easy", small=small, large=large)).route == "small"
    assert (await shunt.arun("hard", small=small, large=large)).text == "large says hi"


def test_curve_and_evaluate_on_saved_answers(tmp_path: Path) -> None:
    rows = curve([0.9, 0.1, 0.5, 0.8], [True, False, False, True], [True, True, True, False])
    assert rows[0] == {"large_rate": 0.0, "accuracy": 0.5}
    assert rows[5]["accuracy"] == 1.0 and rows[-1]["accuracy"] == 0.75
    records = [
        {"task": "t", "answer": a, "accepted": ["yes"], "large_answer": "yes", "logprobs": _lp(lp)}
        for a, lp in [("yes", -0.1), ("no", -2.0), ("yes", -0.2), ("no", -1.0)]
    ]
    figures = evaluate(records)
    assert figures["tasks"]["t"]["auroc"]["mean"] == 1.0
    assert figures["tasks"]["t"]["curve"]["mean"][5]["accuracy"] == 1.0


def test_replay_reads_the_questions_again_from_the_data(tmp_path: Path) -> None:
    from bench.generative import load_questions
    from datashunt.data import find_data_dir

    questions = load_questions(find_data_dir(), per_task=2, seed=3)
    saved = tmp_path / "answers.jsonl"
    lines = [
        {
            "task": q.task,
            "ref": q.ref,
            "answer": q.accepted[0] if i % 2 else "no idea",
            "logprobs": _lp(-0.1 if i % 2 else -2.0),
        }
        for i, q in enumerate(questions)
    ]
    saved.write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    assert "Review:" not in saved.read_text(encoding="utf-8")  # no data set text is saved
    assert main(["--replay", str(saved), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "figures.md").read_text(encoding="utf-8")
    assert "| sentiment (mr) | 2 | 0.500 | 1.000 |" in table
    assert "| all | 6 | 0.500 | 1.000 |" in table


def test_questions_from_the_shared_data() -> None:
    from bench.generative import load_questions
    from datashunt.data import find_data_dir

    questions = load_questions(find_data_dir(), per_task=3, seed=1)
    assert [q.task for q in questions] == ["sentiment (mr)"] * 3 + ["emotion (isear)"] * 3 + [
        "topic (agnews)"
    ] * 3
    assert all(q.accepted and q.accepted[0] for q in questions)
    assert all(q.large_answer is None for q in questions[6:])  # agnews: nothing recorded
    assert "sentiment" in questions[0].prompt and "Answer in one word" in questions[0].prompt


def test_generative_api_is_pinned() -> None:
    import datashunt.generative as generative

    assert set(generative.__all__) == {
        "GENERATIVE_POLICY_FILE",
        "MEASURES",
        "AsyncChatFn",
        "ChatFn",
        "GenerativeCalibration",
        "GenerativePolicy",
        "GenerativeResult",
        "GenerativeShunt",
        "Judgement",
        "Measure",
        "SequenceConfidence",
        "acceptable",
        "auroc",
        "calibrate_generative",
        "sequence_confidence",
    }
    assert all(hasattr(generative, name) for name in generative.__all__)


class Flaky:
    """A small model that fails ``fail`` times (HTTP 503), then answers confidently."""

    model = "small-1"

    def __init__(self, fail: int) -> None:
        self.calls, self.fail = 0, fail

    def __call__(self, messages: object) -> LLMReply:
        self.calls += 1
        if self.calls <= self.fail:
            raise LLMError("HTTP 503", status=503)
        return Small()(messages)


def test_the_small_call_is_retried_timed_and_its_failure_recorded(tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    quick = RetryPolicy(attempts=2, base_delay=0.0, jitter=0.0)
    shunt = GenerativeShunt(
        GenerativePolicy("mean", 0.5), store=store, retry=quick, record_small=True
    )
    small = Flaky(fail=1)
    kept = shunt.run("easy", small=small, large=Large())
    assert kept.route == "small" and small.calls == 2  # retried like any model call
    (rec,) = list(CallStore(store).iter())
    assert rec.source == "small" and rec.extra is not None and rec.extra["attempts"] == 2
    assert rec.latency_s is not None and rec.latency_s >= 0
    # a small model that keeps failing: the large one answers, the failure is recorded
    down = shunt.run("easy again", small=Flaky(fail=9), large=Large())
    assert down.route == "llm" and down.source == "llm" and down.small is None
    assert down.small_error and "HTTP 503" in down.small_error
    assert "the small model failed" in down.judgement.reason
    rec = next(r for r in CallStore(store).iter() if r.id == down.record_id)
    assert rec.extra is not None and "HTTP 503" in str(rec.extra["small_error"])
    assert rec.extra["small_attempts"] == 2 and rec.response == "large says hi"
    # both failing: there is no answer to fall back on
    with pytest.raises(LLMError, match="the large model call failed after 2 attempts"):
        shunt.run("easy", small=Flaky(fail=9), large=Large(fail=9))


class Streams:
    """A large model call that streams words, failing ``fail_at`` (before / after text)."""

    def __init__(self, fail: str | None = None, times: int = 1) -> None:
        self.fail, self.times, self.calls = fail, times, 0

    def chunks(self) -> list[str]:
        self.calls += 1
        return ["large ", "says ", "hi"]


def _stream_call(plan: Streams) -> object:
    from datashunt.engine.calls import ModelCall

    class Call(ModelCall[object]):
        model_name = "large-1"

        def send(self, payload: object) -> LLMReply:
            raise AssertionError("a stream is not sent whole")

        def stream(self, payload: object):  # type: ignore[no-untyped-def]
            words = plan.chunks()
            failing = plan.calls <= plan.times
            if failing and plan.fail == "before":
                raise LLMError("HTTP 503", status=503)
            for i, w in enumerate(words):
                if failing and plan.fail == "after" and i == 1:
                    raise LLMError("HTTP 503", status=503)
                yield w

        async def astream(self, payload: object):  # type: ignore[no-untyped-def]
            for w in self.stream(payload):
                yield w

        def chunk_text(self, chunk: object) -> str:
            return str(chunk)

        def reply(self, acc: object) -> LLMReply:
            return LLMReply(str(acc), model="large-1")

    return Call()


def _small_call() -> object:
    from datashunt.engine.calls import ModelCall

    class Call(ModelCall[object]):
        def send(self, payload: object) -> LLMReply:
            return Small()([Message("user", "hard")])

    return Call()


def test_the_streamed_escalation_is_retried_until_text_is_sent(tmp_path: Path) -> None:
    store = tmp_path / "calls.db"
    quick = RetryPolicy(attempts=3, base_delay=0.0, jitter=0.0)
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5), store=store, retry=quick)
    msgs = (Message("user", "hard"),)
    plan = Streams(fail="before")
    items = list(shunt.stream(msgs, None, _small_call(), _stream_call(plan)))  # type: ignore[arg-type]
    *chunks, result = items
    assert chunks == ["large ", "says ", "hi"] and plan.calls == 2  # the failed try sent nothing
    assert result.source == "llm" and result.text == "large says hi" and result.attempts == 2
    (rec,) = list(CallStore(store).iter())
    assert rec.extra is not None and rec.extra["attempts"] == 2 and rec.response == "large says hi"
    # text reached the caller: no retry, no fallback appended to half an answer; recorded
    broken = Streams(fail="after", times=9)
    with pytest.raises(LLMError, match="the large model call failed"):
        list(shunt.stream(msgs, None, _small_call(), _stream_call(broken)))  # type: ignore[arg-type]
    assert broken.calls == 1
    failed = [r for r in CallStore(store).iter() if r.error]
    assert len(failed) == 1 and failed[0].source == "fallback"


async def test_the_async_stream_keeps_or_escalates() -> None:
    shunt = GenerativeShunt(GenerativePolicy("mean", 0.5))
    msgs = (Message("user", "hard"),)
    items = [i async for i in shunt.astream(msgs, None, _small_call(), _stream_call(Streams()))]  # type: ignore[arg-type]
    assert items[:-1] == ["large ", "says ", "hi"] and items[-1].text == "large says hi"
    easy = GenerativeShunt(GenerativePolicy("mean", 0.0))
    (only,) = [i async for i in easy.astream(msgs, None, _small_call(), _stream_call(Streams()))]  # type: ignore[arg-type]
    assert only.route == "small" and only.text == "small says hard"
