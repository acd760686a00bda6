"""The Ray engine on a local two-CPU cluster gives the local engine's output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datashunt.batch import BatchConfig, run_batch_job
from tests.core.test_batch import write_jsonl

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_matches_local(local_cluster: None, tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", 400, seed=3, extra={"ans": "positive"})
    runs = {}
    for engine, workers in (("local", 1), ("ray", 2)):
        cfg = BatchConfig(
            data, tmp_path / f"{engine}.parquet", tiny_bert, llm_column="ans", budget=0.3,
            engine=engine, workers=workers, batch_size=64,
        )  # fmt: skip
        summary = run_batch_job(cfg)
        assert summary.llm_rows == 120
        runs[engine] = pq.read_table(cfg.out)
    assert (tmp_path / "ray.parquet.work" / "gate").is_dir()  # pass 1 written by the workers
    assert runs["ray"].drop(["confidence"]).equals(runs["local"].drop(["confidence"]))
    conf_ray = runs["ray"].column("confidence").to_numpy()
    conf_local = runs["local"].column("confidence").to_numpy()
    assert abs(conf_ray - conf_local).max() < 1e-6  # other batch paddings, same model
