"""One real local LLM server for the whole integration session (starting one costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datashunt.llm_server import LLMServer


@pytest.fixture(scope="session")
def live_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server
