"""A partition key that is a path (``../../x``), added by hand, is refused by every batch job before it reads or
writes anything: the run fails naming the key, and no file appears or changes outside the artifacts and store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import outcome_of, process_batches, run_config
from green_pipeline.assets.jobs import green_pipeline_job, monitoring_job, retraining_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.demo.stream import StreamSpec, encode_batch, generate_day, write_stream
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration
STREAM = StreamSpec(days=2, rows_per_day=2000, covariate_shift_days=(), concept_drift_days=())
KEY = "../../x"
#: The key as a whole, or inside a file name built from it (``../../x.parquet``).
REFUSAL = re.compile(r"batch name '\.\./\.\./x(\.\w+)?' is not a plain file name.*artifacts\.base_url")


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_a_path_partition_is_refused_by_every_job_and_nothing_is_written_outside(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    root = tmp_path / "outer" / "workspace"
    batches = write_stream(STREAM, str(root / "data"))
    artifacts, store = root / "artifacts", root / "store"
    settings = {"dataset": {"data_url": str(root / "data")}, "model_store": {"store_url": str(store)}}
    config = run_config(settings | {"artifacts": {"base_url": str(artifacts)}})
    first = next(process_batches(defs, instance, batches[:1], config))
    assert first.success and first.deployed_version == "v0001"  # a champion serves: every job could go on
    # What the key points at from the data folder: a readable batch, so only the check stands in the way.
    (tmp_path / "outer" / "x").write_bytes(encode_batch(generate_day(STREAM, 1), "parquet"))
    instance.add_dynamic_partitions(batch_partitions.name, [KEY])
    kept = {artifacts, store}
    outside_before = {p: s for p, s in _files(tmp_path).items() if not kept & set(p.parents)}

    for job in (green_pipeline_job, monitoring_job, retraining_job):
        result = defs.resolve_job_def(job.name).execute_in_process(
            run_config=config, instance=instance, partition_key=KEY, raise_on_error=False
        )
        outcome = outcome_of(instance, KEY, result.run_id, result.success)
        assert not outcome.success, job.name
        assert outcome.error is not None and REFUSAL.search(outcome.error), (job.name, outcome.error)

    outside_after = {p: s for p, s in _files(tmp_path).items() if not kept & set(p.parents)}
    assert outside_after == outside_before
    assert not list(artifacts.rglob("x*"))
    assert ModelStore(str(store)).versions() == ["v0001"]
