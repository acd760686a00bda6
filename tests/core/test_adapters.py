"""The adapter-author helpers of datashunt.adapters, without any framework."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from datashunt import ConfigError, InputError, LLMReply, LLMRequest, Shunt, ShuntPolicy
from datashunt.adapters import (
    LabelChoices,
    ModelCall,
    Rendered,
    ShuntRunner,
    astream_plan,
    block_image_url,
    completion_body,
    keyed_input,
    label_destinations,
    payload_reply,
    read_inputs,
    refuse_unknown,
    result_event,
    selection_reason,
    stream_plan,
)
from datashunt.types import Decision
from tests.conftest import KeywordGate


class _Pos:
    def __init__(self, token: str, logprob: float) -> None:
        self.token, self.logprob = token, logprob


class StreamingCall(ModelCall[str]):
    """Streams a fixed answer in two chunks."""

    def render(self, request: LLMRequest) -> Rendered[str]:
        return Rendered(request.prompt, ())

    def send(self, payload: str) -> str:
        return "negative"

    def stream(self, payload: str) -> Iterator[str]:
        yield from ("nega", "tive")

    async def _chunks(self) -> Any:
        for chunk in ("nega", "tive"):
            yield chunk

    def astream(self, payload: str) -> Any:
        return self._chunks()

    def reply(self, acc: Any) -> str:
        return str(acc)


def _shunt() -> Shunt:
    gate = KeywordGate()
    return Shunt(gate, ShuntPolicy(labels=gate.labels, threshold=0.9))


def test_label_choices_map_labels_by_name_mapping_or_index() -> None:
    choices = LabelChoices(["sports", "weather"], {"weather": "forecast"})
    assert choices.index(["Forecast", "sports"]) == {"sports": 1, "weather": 0}
    assert LabelChoices(["a", "b"], {"a": 1, "b": 0}).index(["x", "y"]) == {"a": 1, "b": 0}
    with pytest.raises(ConfigError, match=r"labels \['news'\].*its labels are"):
        LabelChoices(["sports"], {"news": "x"})
    with pytest.raises(ConfigError, match="gate label 'weather' matches no choice"):
        LabelChoices(["sports", "weather"]).index(["sports", "other"])
    with pytest.raises(ConfigError, match="several choices"):
        LabelChoices(["sports"]).index(["sports", "Sports"])
    with pytest.raises(ConfigError, match="out of range"):
        LabelChoices(["sports"], {"sports": 3}).index(["sports"])


def test_label_choices_request_numbers_the_candidates_and_accepts_numbers_and_names() -> None:
    choices = LabelChoices(["sports", "weather"], {"weather": "forecast"}, {"sports": ["games"]})
    decision = Decision("llm", "weather", 0.6, {"sports": 0.4, "weather": 0.6}, ("weather",), "")
    request = LLMRequest("rain?", decision, {"text": "rain?"}, "p", candidates=("weather",))
    names, descriptions = ["forecast", "sports"], ["Rain  and\nsun", "Games"]
    index = choices.index(names)
    out = choices.request(request, "{options}|{text}", names, descriptions, index)
    assert out.prompt == "(2) weather: Rain and sun|rain?"
    assert out.aliases == {"sports": ["games", "1", "sports"], "weather": ["2", "forecast"]}


def test_label_destinations_default_to_the_labels_and_name_the_missing() -> None:
    assert label_destinations(["a", "b"], {"a", "b"}, None) == {"a": "a", "b": "b"}
    assert label_destinations(["a"], {"x"}, {"a": "x"}) == {"a": "x"}
    with pytest.raises(ConfigError, match=r"gate labels \['b'\] have no destination"):
        label_destinations(["a", "b"], {"a"}, None)


def test_read_inputs_keeps_each_unreadable_input_in_its_slot() -> None:
    def read(value: Any, index: int | None) -> tuple[object, dict[str, Any]]:
        if isinstance(value, dict):
            return keyed_input(value, "text", index)
        if not isinstance(value, str):
            raise InputError(f"input {index} unreadable")
        return value, {}

    texts, extras = read_inputs([{"text": "hi", "lang": "en"}, 3, "yo"], read)
    assert texts[0] == "hi" and texts[2] == "yo" and isinstance(texts[1], InputError)
    assert extras == [{"lang": "en"}, {}, {}]
    (error,), _ = read_inputs([{"body": "hi"}], lambda v, i: keyed_input(v, "text", i))
    assert isinstance(error, InputError) and "no 'text' key" in str(error)


def test_block_image_url_reads_the_standard_and_openai_forms_only_inline() -> None:
    assert block_image_url({"type": "image", "base64": "AAA", "mime_type": "image/jpeg"}) == (
        "data:image/jpeg;base64,AAA"
    )
    url = "data:image/png;base64,iVBORw0KGgo="
    assert block_image_url({"type": "image_url", "image_url": {"url": url}}) == url
    assert block_image_url({"type": "image_url", "image_url": "https://x/y.png"}) is None
    assert block_image_url({"type": "text", "text": "hi"}) is None


def test_payload_reply_reads_the_payload_else_the_alternatives() -> None:
    lp = [{"token": "pos", "logprob": -0.1, "top_logprobs": []}]
    reply = LLMReply("pos", logprobs=lp, prompt_tokens=3, completion_tokens=1)
    back = payload_reply("pos", completion_body(reply, "stop"))
    assert (back.text, back.prompt_tokens, back.completion_tokens) == ("pos", 3, 1)
    assert back.logprobs == [{"token": "pos", "logprob": -0.1, "top_logprobs": []}]
    positions = [[_Pos("neg", -2.0), _Pos("pos", -0.2)]]
    alt = payload_reply("pos", None, positions, {"prompt_tokens": 7})
    assert alt.logprobs is not None and alt.logprobs[0]["token"] == "pos"
    assert alt.prompt_tokens == 7 and alt.model is None


def test_refuse_unknown_names_the_keywords_and_what_to_do() -> None:
    refuse_unknown("X", {"a": 1}, {"a"}, "never")
    with pytest.raises(ConfigError, match=r"X does not take 'b', 'c': pass them to the model"):
        refuse_unknown("X", {"a": 1, "c": 2, "b": 3}, {"a"}, "pass them to the model")


def test_runner_and_stream_plan_answer_small_alone_and_stream_the_llm_route() -> None:
    shunt, call = _shunt(), StreamingCall()
    runner = ShuntRunner(shunt)
    small = runner.answer("a great product", call)
    assert (small.label, small.source) == ("positive", "small")
    assert "gate chose 'positive'" in selection_reason(small)
    assert result_event(small)["attempts"] == small.attempts
    (only,) = stream_plan(shunt, runner.plan("a great product"), call)
    assert only.label == "positive" and only.route == "small"
    first, *chunks, last = stream_plan(shunt, runner.plan("it arrived"), call)
    assert isinstance(first, Decision) and first.route == "llm"
    assert chunks == ["nega", "tive"] and (last.label, last.source) == ("negative", "llm")
    with pytest.raises(TypeError, match="datashunt.Shunt"):
        ShuntRunner("not a shunt")  # type: ignore[arg-type]


async def test_astream_plan_is_the_async_twin() -> None:
    shunt, call = _shunt(), StreamingCall()
    plan = await ShuntRunner(shunt).aplan("it arrived")
    first, *chunks, last = [v async for v in astream_plan(shunt, plan, call)]
    assert isinstance(first, Decision) and chunks == ["nega", "tive"]
    assert (last.label, last.source) == ("negative", "llm")
