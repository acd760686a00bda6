"""The load benchmark's CLI runs end to end on a small load (the full run is `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import main, synthetic_reviews
from datashunt.llm.server import LLMServer


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--backends", "mysql"])
    assert info.value.code == 2


def test_synthetic_reviews_share() -> None:
    texts = synthetic_reviews(1000, 0.3)
    unsure = [t for t in texts if "The blender is" not in t]
    assert len(texts) == 1000 and 250 < len(unsure) < 350


@pytest.mark.llm_server
@pytest.mark.postgres
def test_small_load_on_both_stores(
    live_server: LLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "load.json"
    argv = ["--n", "40", "--base-url", live_server.base_url, "--model", live_server.model_name]
    assert main([*argv, "--tracemalloc", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for backend in ("sqlite", "postgres"):
        run = report["runs"][backend]
        assert run["finished"] and run["problems"] == [] and run["errors"] == 0
        assert run["llm_errors"] == 0, run["llm_error_samples"]
        assert run["records_written"] == 40 and run["records_llm"] == run["llm_routed"] > 0
        assert run["llm_attempts_recorded"] == run["llm_calls_made"] >= run["llm_routed"]
        assert run["latency_all"]["p99_s"] >= run["latency_all"]["p50_s"] > 0
        assert run["peak_rss_mb"] > 0 and run["tracemalloc_peak_mb"] > 0
    assert "[postgres] 40 inputs" in capsys.readouterr().out
