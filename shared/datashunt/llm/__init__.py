"""Talking to the large model: retries, the OpenAI-compatible client, cache, replay, local server.

* :class:`RetryPolicy`: bounded retries with backoff (on tenacity) around any LLM call.
* :class:`OpenAICompatLLM`: one client for any OpenAI-compatible API, on the ``openai`` SDK.
* :class:`LLMCache` / :class:`CachedLLM`: answers kept by (model, prompt) in the store's database.
* :class:`ReplayLLM`: answers replayed from a recorded CSV or JSONL file.
* :class:`ColumnReplayLLM`: a column of recorded answers in a labelled data file, as an LLM.
* :class:`LLMServer`: the embedded llama.cpp server, run in a child process.

Only the retry names load with the package: the others are imported on first use, so that
``import datashunt`` loads neither the ``openai`` SDK nor the server code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .retry import (
    RETRYABLE_STATUSES,
    Attempted,
    RetryPolicy,
    empty_answer_error,
    retry_after_of,
    status_of,
)

if TYPE_CHECKING:
    from .cache import CachedAnswer, CachedLLM, LLMCache, prompt_key
    from .client import OpenAICompatLLM
    from .gguf import find_default_gguf
    from .replay import ColumnReplayLLM, ReplayLLM
    from .server import LLMServer, LLMServerError
    from .wire import ReplyAccumulator

__all__ = [
    "RETRYABLE_STATUSES",
    "Attempted",
    "CachedAnswer",
    "CachedLLM",
    "ColumnReplayLLM",
    "LLMCache",
    "LLMServer",
    "LLMServerError",
    "OpenAICompatLLM",
    "ReplayLLM",
    "ReplyAccumulator",
    "RetryPolicy",
    "empty_answer_error",
    "find_default_gguf",
    "prompt_key",
    "retry_after_of",
    "status_of",
]

_LAZY = {
    "CachedAnswer": "cache",
    "CachedLLM": "cache",
    "LLMCache": "cache",
    "prompt_key": "cache",
    "OpenAICompatLLM": "client",
    "find_default_gguf": "gguf",
    "ReplayLLM": "replay",
    "ColumnReplayLLM": "replay",
    "LLMServer": "server",
    "LLMServerError": "server",
    "ReplyAccumulator": "wire",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
