"""LangChain's standard unit tests (``langchain-tests``) for ``DataShuntChatModel``.

The suite builds the model from its standard parameters (temperature, max_tokens, timeout,
stop, max_retries), checks its LangSmith params, tool binding and structured output. The two
inner models are ``ChatOpenAI`` pointed at an address nothing listens on: no test here sends a
request.

The suite's own skips, and why they hide nothing (the suite forbids overriding a test except
to xfail it, so the reasons live here):

- ``test_init_from_env`` ("init_from_env_params not specified"): DataShuntChatModel reads no
  environment variable; its inner models do.
- ``test_serdes`` ("Model is not serializable"): it holds two live chat models and a store
  connection, which ``dumpd`` cannot carry; ``is_lc_serializable`` is False.
"""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from langchain_tests.unit_tests import ChatModelUnitTests

from datashunt.generative import GenerativePolicy, GenerativeShunt
from langchain_datashunt import DataShuntChatModel


def _openai(model: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        api_key="unused",  # type: ignore[arg-type]
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        **kw,
    )


class TestDataShuntChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[DataShuntChatModel]:
        return DataShuntChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "small": _openai("smollm2", logprobs=True),
            "large": _openai("gpt-4o-mini"),
            "shunt": GenerativeShunt(GenerativePolicy("mean", 0.7)),
        }

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # The suite adds api_key="test" for provider models. DataShuntChatModel holds no
        # credentials (its inner models do) and refuses api_key with a message that says so
        # (test_chat_model.py::test_unknown_options_are_refused_with_what_to_do); every other
        # standard parameter is accepted and sent to both models.
        params = super().standard_chat_model_params
        del params["api_key"]
        return params

    @property
    def supports_model_override(self) -> bool:
        # a per-call model= would name one model for a pair of two
        return False
