"""The daily schedule: run the pipeline on every registered batch not processed yet, in name order."""

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from green_pipeline.assets.jobs import energy_ledger_job, green_pipeline_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.batches import list_batches
from green_pipeline.orchestration.metadata import DRIFT_REPORT
from green_pipeline.orchestration.resources import DatasetResource

IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@schedule(job=green_pipeline_job, cron_schedule="0 6 * * *", default_status=DefaultScheduleStatus.STOPPED)
def daily_pipeline_schedule(
    context: ScheduleEvaluationContext, dataset: DatasetResource
) -> list[RunRequest] | SkipReason:
    """Pick up every batch file that has arrived and has no drift report yet (nor a run in flight)."""
    instance = context.instance
    available = list_batches(dataset.data_url, dataset.storage_options())
    instance.add_dynamic_partitions(batch_partitions.name, available)
    processed = instance.get_materialized_partitions(DRIFT_REPORT)
    in_flight = {
        run.tags.get("dagster/partition")
        for run in instance.get_runs(RunsFilter(job_name=green_pipeline_job.name, statuses=IN_FLIGHT))
    }
    pending = [name for name in available if name not in processed and name not in in_flight]
    if not pending:
        return SkipReason(f"every batch under {dataset.data_url} is processed")
    # One attempt per batch and tick: a failed batch is retried by the next day's tick, never twice a day.
    tick = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [RunRequest(partition_key=name, run_key=f"{tick}:{name}") for name in pending]


daily_ledger_schedule = ScheduleDefinition(
    name="daily_ledger_schedule",
    job=energy_ledger_job,
    cron_schedule="0 7 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Refresh the energy ledger after the day's batches.",
)
