"""The new-data sensor, the drift sensor and the daily schedule, evaluated against a real instance."""

import json
from datetime import UTC, datetime

import pytest
from dagster import DagsterInstance, build_schedule_context, build_sensor_context

from green_pipeline.app.definitions import defs
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.orchestration.resources import CarbonAwareScheduling, DatasetResource, ObjectStorage
from green_pipeline.sensors.drift import drift_retraining_sensor
from green_pipeline.sensors.new_data import new_batch_sensor
from green_pipeline.sensors.schedules import daily_pipeline_schedule

pytestmark = pytest.mark.integration


def _dataset(workspace) -> DatasetResource:
    return DatasetResource(data_url=workspace.data_url, storage=ObjectStorage())


def test_new_batch_sensor_registers_partitions_and_runs_each_file_once(workspace, instance) -> None:
    (workspace.root / "data" / "_partial.parquet").write_bytes(b"uploading")
    (workspace.root / "data" / ".hidden.parquet").write_bytes(b"x")
    with build_sensor_context(instance=instance, resources={"dataset": _dataset(workspace)}) as context:
        result = new_batch_sensor(context)
    assert [r.partition_key for r in result.run_requests] == workspace.batches
    assert result.dynamic_partitions_requests[0].partition_keys == workspace.batches

    with build_sensor_context(
        instance=instance, cursor=result.cursor, resources={"dataset": _dataset(workspace)}
    ) as context:
        assert new_batch_sensor(context).run_requests == []

    first = workspace.root / "data" / workspace.batches[0]
    first.write_bytes(first.read_bytes() + b"\0")  # re-uploaded with another size
    with build_sensor_context(
        instance=instance, cursor=result.cursor, resources={"dataset": _dataset(workspace)}
    ) as context:
        changed = new_batch_sensor(context)
    assert [r.partition_key for r in changed.run_requests] == [workspace.batches[0]]
    assert json.loads(changed.cursor)[workspace.batches[0]] == first.stat().st_size


def test_drift_sensor_requests_retraining_only_for_monitoring_runs_that_need_it(workspace, instance) -> None:
    instance.add_dynamic_partitions(batch_partitions.name, workspace.batches)
    full, monitoring = defs.resolve_job_def("green_pipeline_job"), defs.resolve_job_def("monitoring_job")
    config = workspace.config()
    assert full.execute_in_process(run_config=config, instance=instance, partition_key=workspace.batches[0]).success
    for batch in workspace.batches[1:]:
        assert monitoring.execute_in_process(run_config=config, instance=instance, partition_key=batch).success

    carbon = {"carbon_aware": CarbonAwareScheduling()}  # off by default: no deferral
    result = drift_retraining_sensor(build_sensor_context(instance=instance, resources=carbon))
    assert [r.partition_key for r in result.run_requests] == [workspace.batches[2]]
    again = drift_retraining_sensor(build_sensor_context(instance=instance, cursor=result.cursor, resources=carbon))
    assert again.run_requests == []


def test_daily_schedule_runs_unprocessed_batches_in_order(workspace, instance: DagsterInstance) -> None:
    tick = datetime(2026, 1, 4, 6, tzinfo=UTC)
    with build_schedule_context(
        instance=instance, resources={"dataset": _dataset(workspace)}, scheduled_execution_time=tick
    ) as context:
        requests = daily_pipeline_schedule(context)
    assert [r.partition_key for r in requests] == workspace.batches
    assert requests[0].run_key == f"2026-01-04:{workspace.batches[0]}"
    assert set(instance.get_dynamic_partitions(batch_partitions.name)) == set(workspace.batches)
