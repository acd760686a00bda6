"""LangChain's standard integration tests (``langchain-tests``) for ``DataShuntChatModel``
against the embedded local LLM server (SmolLM2 through llama.cpp, reached by ``ChatOpenAI``),
once with a policy that escalates every answer (δ = 1.0) and once with one that keeps every
answer (δ = 0.0), so both routes, their streams included, meet the whole suite.

The suite's own skips, and why they hide nothing (the suite forbids overriding a test except
to xfail it, so the reasons live here):

- tool calling, tool choice, structured output, JSON mode, agent loop ("Test requires tool
  calling" / "structured output"): ``bind_tools`` and ``with_structured_output`` hand the
  request to the large model unrouted, so these tests would test the local server's tool
  support, not this class; the delegation is checked in ``test_chat_model.py`` and by the
  unit suite.
- model override: a per-call ``model=`` would name one model for a pair of two.
- image, PDF, audio, Anthropic-style inputs: SmolLM2-135M reads text only.
- ``test_stream_time`` ("VCR not set up"): no recorded cassettes; the server is real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from datashunt.generative import GenerativePolicy, GenerativeShunt
from datashunt.llm.server import LLMServer
from langchain_datashunt import DataShuntChatModel

pytestmark = pytest.mark.llm_server

_SERVER: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _local_server() -> Iterator[None]:
    # the suite builds models from properties, which cannot ask for fixtures
    with LLMServer() as server:
        _SERVER["server"] = server
        yield
    _SERVER.clear()


@pytest.fixture(autouse=True)
async def _http_pool() -> AsyncIterator[None]:
    # one async HTTP pool per test, closed in the test's own event loop: langchain-openai's
    # default pool is cached for the process and outlives each test's loop
    async with httpx.AsyncClient() as pool:
        _SERVER["pool"] = pool
        yield


def _chat(**kw: Any) -> ChatOpenAI:
    server = _SERVER["server"]
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="local",  # type: ignore[arg-type]
        model=server.model_name,
        max_retries=0,  # the shunt's retry policy retries
        stream_usage=True,
        http_async_client=_SERVER["pool"],
        **kw,
    )


class _Live(ChatModelIntegrationTests):
    delta = 0.5

    @property
    def chat_model_class(self) -> type[DataShuntChatModel]:
        return DataShuntChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "small": _chat(logprobs=True, top_logprobs=1),  # llama.cpp: none without it
            "large": _chat(),
            "shunt": GenerativeShunt(GenerativePolicy("mean", self.delta)),
        }

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # 20 tokens, not 100: the same checks, a shorter CPU-only run
        return {**super().standard_chat_model_params, "max_tokens": 20}

    @property
    def has_tool_calling(self) -> bool:
        return False  # the large model's job, unrouted (see the module docstring)

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False


class TestEscalatingLive(_Live):
    """δ = 1.0: the small answer never stands; the large model answers, streamed."""

    delta = 1.0

    @pytest.mark.xfail(
        reason="the local llama.cpp server sends no usage in a stream, even asked with "
        "stream_options include_usage (ChatOpenAI stream_usage=True): the large model's own "
        "stream has none to keep; a stream keeps the usage a provider sends "
        "(test_chat_model.py's stream probe), and the keeping set-up passes this test",
        strict=True,
    )
    def test_usage_metadata_streaming(self, model: Any) -> None:
        super().test_usage_metadata_streaming(model)


class TestKeepingLive(_Live):
    """δ = 0.0: every small answer stands; a stream sends it whole, usage included."""

    delta = 0.0
