"""The drift sensor: launches the retraining job for batches whose drift report asks for a retrain.

With ``carbon_aware.enabled``, a retrain that is not urgent waits in the cursor for the lowest-intensity
window before its deadline; urgent ones, and any whose intensity cannot be read, are requested at once.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dagster import (
    AssetRecordsFilter,
    DefaultSensorStatus,
    EventLogRecord,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from green_pipeline.assets.jobs import green_pipeline_job, retraining_job
from green_pipeline.carbon.deferral import (
    PROVIDER_FAILED,
    URGENT,
    Deferral,
    DriftSignal,
    current_intensity,
    immediate_tags,
    plan_deferral,
    urgency,
)
from green_pipeline.carbon.intensity import CarbonIntensityError
from green_pipeline.errors import EventLogError
from green_pipeline.orchestration.metadata import DRIFT_REPORT, DriftDecision
from green_pipeline.orchestration.resources import CarbonAwareScheduling

PAGE = 100


@dataclass
class SensorState:
    """The cursor: the last drift report seen, and the retrains waiting for their window."""

    after: int | None = None
    pending: list[Deferral] = field(default_factory=list)

    @classmethod
    def parse(cls, cursor: str | None) -> "SensorState":
        if not cursor:
            return cls()
        if cursor.isdigit():  # the cursor before carbon-aware deferral: a bare storage id
            return cls(after=int(cursor))
        document = json.loads(cursor)
        return cls(document["after"], [Deferral.from_json(d) for d in document["pending"]])

    def dump(self) -> str:
        return json.dumps({"after": self.after, "pending": [d.to_json() for d in self.pending]}, sort_keys=True)


@sensor(job=retraining_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED)
def drift_retraining_sensor(context: SensorEvaluationContext, carbon_aware: CarbonAwareScheduling) -> SensorResult:
    """Request one retraining run per drift report with ``retrain_required``, unless its run retrained already.

    Reports from the full pipeline job are skipped: that job retrains in the same run. The run key is
    the report's event id, so each report triggers at most one retraining.
    """
    return retraining_requests(context, carbon_aware, datetime.now(UTC))


def retraining_requests(
    context: SensorEvaluationContext, carbon_aware: CarbonAwareScheduling, now: datetime
) -> SensorResult:
    """One tick at ``now`` (a parameter so tests can evaluate the sensor at any hour of a profile)."""
    state = SensorState.parse(context.cursor)
    page = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=DRIFT_REPORT, after_storage_id=state.after), limit=PAGE, ascending=True
    )
    requests = []
    for record in page.records:
        decision = _asks_for_retraining(context, record)
        if decision is not None:
            request_or_wait = _schedule(context, carbon_aware, record, decision, now)
            if isinstance(request_or_wait, Deferral):
                context.log.info(
                    f"Retraining of {record.partition_key} deferred to {request_or_wait.window_start.isoformat()} "
                    f"(expected {request_or_wait.expected_g_co2_per_kwh:.0f} g/kWh in {request_or_wait.zone})."
                )
                state.pending.append(request_or_wait)
            else:
                requests.append(request_or_wait)
    due = [d for d in state.pending if d.due(now) or not carbon_aware.enabled]
    requests += [_release(context, carbon_aware, deferral, now) for deferral in due]
    state.pending = [d for d in state.pending if d not in due]
    if page.records:
        state.after = page.records[-1].storage_id
    return SensorResult(run_requests=requests, cursor=state.dump())


def _asks_for_retraining(context: SensorEvaluationContext, record: EventLogRecord) -> DriftDecision | None:
    """The report's decision if it asks for a retraining its own run did not do, else None.

    A report this code location did not write (no decision in its metadata) asks for nothing: it is logged and passed
    over, so one foreign event cannot stop the sensor for good.
    """
    materialization = record.asset_materialization
    if materialization is None:
        return None
    try:
        decision = DriftDecision.from_metadata(materialization.metadata)
    except EventLogError as exc:
        context.log.warning(f"Drift report {record.storage_id} ({record.partition_key}) skipped: {exc}")
        return None
    run = context.instance.get_run_by_id(record.run_id)
    retrained_in_its_run = run is not None and run.job_name == green_pipeline_job.name
    return decision if decision.retrain_required and not retrained_in_its_run else None


def _schedule(
    context: SensorEvaluationContext,
    carbon_aware: CarbonAwareScheduling,
    record: EventLogRecord,
    decision: DriftDecision,
    now: datetime,
) -> RunRequest | Deferral:
    """A run request now, or the deferral that will become one at its window."""
    run_key, partition = f"retrain:{record.storage_id}", record.partition_key
    if not carbon_aware.enabled:
        return RunRequest(partition_key=partition, run_key=run_key)
    settings = carbon_aware.to_settings()
    signal = DriftSignal(
        reported_at=datetime.fromtimestamp(record.timestamp, UTC),
        drifted_share=decision.drifted_share,
        auc_drop=decision.champion_auc_drop,
        has_champion=decision.champion_version is not None,
    )
    reason = urgency(signal, settings)
    if reason is not None:
        return RunRequest(partition_key=partition, run_key=run_key, tags=immediate_tags(settings.zone, URGENT, reason))
    try:
        deferral = plan_deferral(carbon_aware.intensity_provider(), settings, signal, now, run_key, partition)
    except CarbonIntensityError as exc:
        context.log.warning(f"Carbon intensity unavailable, retraining {partition} at once: {exc}")
        return RunRequest(
            partition_key=partition, run_key=run_key, tags=immediate_tags(settings.zone, PROVIDER_FAILED, str(exc))
        )
    return _release(context, carbon_aware, deferral, now) if deferral.due(now) else deferral


def _release(
    context: SensorEvaluationContext, carbon_aware: CarbonAwareScheduling, deferral: Deferral, now: datetime
) -> RunRequest:
    try:
        request_g: float | None = current_intensity(carbon_aware.intensity_provider(), deferral.zone, now)
    except CarbonIntensityError as exc:
        context.log.warning(f"Carbon intensity at request time unavailable: {exc}")
        request_g = None
    return RunRequest(partition_key=deferral.partition, run_key=deferral.run_key, tags=deferral.tags(request_g))
