"""LlamaIndex responses to LLMReply: text, OpenAI-shape logprobs, tokens, model."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LogProb,
    MessageRole,
)

from datashunt.adapters import AnswerParser, openai_logprobs
from datashunt.parsing import label_distribution_from_logprobs
from llamaindex_datashunt._runner import to_reply


def _chat(text: str, **kw: object) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), **kw)  # type: ignore[arg-type]


def test_openai_dict_payload_gives_exact_logprobs_tokens_and_model() -> None:
    raw = {
        "model": "m-1",
        "choices": [
            {
                "message": {"content": "positive"},
                "logprobs": {
                    "content": [
                        {
                            "token": "positive",
                            "logprob": -0.2,
                            "bytes": None,
                            "top_logprobs": [
                                {"token": "positive", "logprob": -0.2, "bytes": None},
                                {"token": "negative", "logprob": -1.8},
                            ],
                        }
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
    }
    reply = to_reply(_chat("positive", raw=raw))
    assert reply.text == "positive" and reply.model == "m-1"
    assert (reply.prompt_tokens, reply.completion_tokens) == (12, 1)
    assert reply.logprobs == [
        {
            "token": "positive",
            "logprob": -0.2,
            "top_logprobs": [
                {"token": "positive", "logprob": -0.2},
                {"token": "negative", "logprob": -1.8},
            ],
        }
    ]


def test_sdk_objects_are_read_as_the_json_sent() -> None:
    from openai.types.chat import ChatCompletion

    top = [{"token": "neg", "logprob": -0.1}]
    entry = {"token": "neg", "logprob": -0.1, "top_logprobs": top}
    raw = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "x",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "negative"},
                    "logprobs": {"content": [entry]},
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )
    reply = to_reply(_chat("negative", raw=raw))
    assert reply.logprobs == [
        {"token": "neg", "logprob": -0.1, "top_logprobs": [{"token": "neg", "logprob": -0.1}]}
    ]
    assert reply.prompt_tokens == 3 and reply.model == "x"


def test_legacy_completion_logprobs() -> None:
    raw = {
        "choices": [
            {
                "text": " positive",
                "logprobs": {
                    "tokens": [" positive"],
                    "token_logprobs": [-0.3],
                    "top_logprobs": [{" positive": -0.3, " negative": -1.5}],
                },
            }
        ]
    }
    reply = to_reply(CompletionResponse(text=" positive", raw=raw))
    assert reply.logprobs is not None
    assert reply.logprobs[0]["token"] == " positive"
    assert {a["token"] for a in reply.logprobs[0]["top_logprobs"]} == {" positive", " negative"}


def test_llamaindex_logprobs_recover_the_sampled_token_from_the_text() -> None:
    # The sampled token is not the most probable one at the second position.
    positions = [
        [LogProb(token="The", logprob=-0.1), LogProb(token="A", logprob=-2.0)],
        [LogProb(token=" answer", logprob=-0.5), LogProb(token=" label", logprob=-0.9)],
    ]
    out = openai_logprobs(None, positions, "The label")
    assert out is not None
    assert [e["token"] for e in out] == ["The", " label"]
    assert out[1]["logprob"] == -0.9 and len(out[1]["top_logprobs"]) == 2


def test_llamaindex_logprobs_feed_the_core_confidence() -> None:
    positions = [[LogProb(token="neg", logprob=-0.2231), LogProb(token="pos", logprob=-1.6094)]]
    reply = to_reply(_chat("negative", logprobs=positions))
    dist = label_distribution_from_logprobs(
        reply.logprobs or [], AnswerParser(["negative", "positive"])
    )
    assert dist is not None and dist["negative"] == pytest.approx(0.8, abs=0.01)


def test_usage_in_additional_kwargs_and_no_logprobs() -> None:
    reply = to_reply(
        CompletionResponse(text="x", additional_kwargs={"prompt_tokens": 4, "completion_tokens": 2})
    )
    assert (reply.prompt_tokens, reply.completion_tokens, reply.logprobs) == (4, 2, None)


def test_other_types_are_refused() -> None:
    assert to_reply("plain").text == "plain"
    with pytest.raises(TypeError, match="expected a ChatResponse or CompletionResponse"):
        to_reply(42)
    assert to_reply(_chat("")).text == ""
