"""The new-data sensor: every new batch file under the data URL becomes a partition and a pipeline run."""

import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from green_pipeline.assets.jobs import green_pipeline_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.batches import batch_sizes, new_batches
from green_pipeline.orchestration.resources import DatasetResource


@sensor(job=green_pipeline_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED)
def new_batch_sensor(context: SensorEvaluationContext, dataset: DatasetResource) -> SensorResult:
    """Register new batches (files, and Parquet datasets once complete) as partitions and run the pipeline on each,
    in name order.

    The run key includes the file size, so a re-uploaded file runs again and a restart repeats nothing;
    the cursor (name -> size) advances only with the requests built in this tick.
    """
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    fresh = new_batches(batch_sizes(dataset.data_url, dataset.storage_options()), seen)
    known = set(context.instance.get_dynamic_partitions(batch_partitions.name))
    return SensorResult(
        run_requests=[RunRequest(partition_key=name, run_key=f"{name}:{size}") for name, size in fresh.items()],
        dynamic_partitions_requests=[batch_partitions.build_add_request([n for n in fresh if n not in known])],
        cursor=json.dumps({**seen, **fresh}, sort_keys=True),
    )
