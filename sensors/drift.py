"""The drift sensor: launches the retraining job for batches whose drift report asks for a retrain."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from green_pipeline.assets.jobs import green_pipeline_job, retraining_job

DRIFT_REPORT = AssetKey("drift_report")
PAGE = 100


@sensor(job=retraining_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED)
def drift_retraining_sensor(context: SensorEvaluationContext) -> SensorResult:
    """Request one retraining run per drift report with ``retrain_required``, unless its run retrained already.

    Reports from the full pipeline job are skipped: that job retrains in the same run. The run key is
    the report's event id, so each report triggers at most one retraining.
    """
    after = int(context.cursor) if context.cursor else None
    page = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=after), limit=PAGE, ascending=True
    )
    requests = []
    for record in page.records:
        materialization = record.asset_materialization
        required = materialization.metadata.get("retrain_required") if materialization else None
        run = context.instance.get_run_by_id(record.run_id)
        if not required or not required.value or (run and run.job_name == green_pipeline_job.name):
            continue
        requests.append(RunRequest(partition_key=record.partition_key, run_key=f"retrain:{record.storage_id}"))
    last = page.records[-1].storage_id if page.records else after
    return SensorResult(run_requests=requests, cursor=str(last) if last is not None else None)
