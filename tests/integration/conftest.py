"""One real local LLM server and one throwaway PostgreSQL cluster for the whole integration
session (starting either costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.pgcluster import PostgresCluster, PostgresUnavailable
from datashunt.llm.server import LLMServer


@pytest.fixture(scope="session")
def live_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    # No skip: a missing or broken PostgreSQL fails these tests, saying why.
    cluster: PostgresCluster | None = None
    try:
        cluster = PostgresCluster()
        cluster.start()
    except PostgresUnavailable as exc:
        if cluster is not None:
            cluster.stop()
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh database on the session's cluster (restarted if a test left it stopped)."""
    if not (pg_cluster.data / "postmaster.pid").exists():
        pg_cluster.start()
    return pg_cluster.create_database()
