"""Runs batches through the Dagster pipeline job, one run per batch in name order, and reads back outcomes.

The CLI and the tests use it; every figure in an outcome comes from the run's own event log.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterInvalidConfigError,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    build_resources,
)

from green_pipeline.assets.jobs import green_pipeline_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.io_manager import QUARANTINED
from green_pipeline.orchestration.ledger import entries_of, latest_metadata, run_materializations, total_of
from green_pipeline.orchestration.metadata import DeploymentRecord, DriftDecision, TrainingRecord
from green_pipeline.orchestration.resources import ModelStoreResource, ObjectStorage

CONFIGURABLE_RESOURCES = (
    "dataset",
    "model_store",
    "artifacts",
    "policy",
    "energy",
    "object_storage",
    "check_thresholds",
    "mlflow_tracking",
    "dask",
)

#: Run tag the runner adds to a quarantined batch's run: the UI's run list filters on it, and ``times_quarantined``
#: counts it.
QUARANTINED_TAG = "green_pipeline/quarantined"
PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class BatchOutcome:
    batch: str
    run_id: str
    success: bool
    error: str | None
    #: The run failed on invalid input (an ``InvalidBatchError``): the batch is set aside and later ones still run.
    quarantined: bool
    drifted_share: float | None
    retrained: bool
    strategy: str | None
    deployed_version: str | None
    #: Whether the deployed version was promoted; None when nothing was deployed.
    promoted: bool | None
    serving_version: str | None
    served_auc: float | None
    energy_kwh: float
    emissions_kg_co2eq: float
    unmeasured_steps: int


def load_config_file(path: str) -> dict[str, dict[str, Any]]:
    """Read a YAML/JSON file whose top-level keys are resource names and whose values are their fields."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidConfigError(f"{path}: cannot read the config file: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidConfigError(f"{path}: expected a mapping of resource names to settings.")
    unknown = sorted(set(document) - set(CONFIGURABLE_RESOURCES))
    if unknown:
        raise InvalidConfigError(f"{path}: unknown section(s) {unknown}; allowed: {list(CONFIGURABLE_RESOURCES)}.")
    return document


def storage_resources(
    settings: Mapping[str, Mapping[str, Any]], source: str
) -> tuple[ObjectStorage, ModelStoreResource]:
    """The object storage and model store a run given ``settings`` gets, for commands that reach them outside runs.

    Built by Dagster from the same config sections, so ``{env: NAME}`` values and unknown fields are handled as in
    a run; fields left unset fall back to s3fs's credential chain (the standard ``AWS_*`` variables) there too.
    """
    storage = ObjectStorage.configure_at_launch()
    wanted = {"object_storage": storage, "model_store": ModelStoreResource.configure_at_launch(storage=storage)}
    sections = {name: settings[name] for name in wanted if name in settings}
    try:
        with build_resources(wanted, resource_config=run_config(sections)["resources"]) as built:
            return built.object_storage, built.model_store
    except DagsterInvalidConfigError as exc:
        reasons = "; ".join(" ".join(e.message.split("Stack Trace:")[0].split()) for e in exc.errors)
        raise InvalidConfigError(f"{source}: {reasons}") from exc


def run_config(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Dagster run config that overrides the given resource fields (others keep their defaults)."""
    return {"resources": {name: {"config": dict(fields)} for name, fields in settings.items() if fields}}


def process_batches(
    defs: Definitions, instance: DagsterInstance, batches: list[str], config: dict[str, Any]
) -> Iterator[BatchOutcome]:
    """Run the pipeline job on each batch in order, in this process.

    A batch refused as invalid input is quarantined: its run is tagged ``QUARANTINED_TAG`` and the later batches
    still run, judged against the serving model it left unchanged. Any other failed run stops here: later batches
    depend on it, and a refused setting or a faulty store would fail them too. Steps run in process whatever executor
    the job carries: a fresh process per step would cost seconds and energy here, and the instance's concurrency
    pools still serialize trainings across processes."""
    job = defs.resolve_job_def(green_pipeline_job.name)
    instance.add_dynamic_partitions(batch_partitions.name, batches)
    for batch in batches:
        result = job.execute_in_process(run_config=config, instance=instance, partition_key=batch, raise_on_error=False)
        outcome = outcome_of(instance, batch, result.run_id, result.success)
        if outcome.quarantined:
            instance.add_run_tags(result.run_id, {QUARANTINED_TAG: "true"})
        yield outcome
        if not outcome.success and not outcome.quarantined:
            return


def processed_batches(instance: DagsterInstance) -> set[str]:
    """Batches whose pipeline run has succeeded on this instance. A quarantined batch is not one of them: the next
    ``green-pipeline run`` tries it again, since its file may have been fixed, and reports it again if still bad."""
    runs = instance.get_runs(RunsFilter(job_name=green_pipeline_job.name, statuses=[DagsterRunStatus.SUCCESS]))
    return {run.tags[PARTITION_TAG] for run in runs if PARTITION_TAG in run.tags}


def times_quarantined(instance: DagsterInstance, batch: str) -> int:
    """How many pipeline runs on this instance quarantined ``batch``, the latest included."""
    tags = {PARTITION_TAG: batch, QUARANTINED_TAG: "true"}
    return instance.get_runs_count(RunsFilter(job_name=green_pipeline_job.name, tags=tags))


def outcome_of(instance: DagsterInstance, batch: str, run_id: str, success: bool) -> BatchOutcome:
    """What a run did to ``batch``, read back through the metadata contract."""
    events = run_materializations(instance, run_id)
    latest = latest_metadata(events)
    drift, training = DriftDecision.from_steps(latest), TrainingRecord.from_steps(latest)
    deployment = DeploymentRecord.from_steps(latest)
    energy = total_of(run_id, entries_of(events))
    error, quarantined = (None, False) if success else _failure(instance, run_id)
    return BatchOutcome(
        batch=batch,
        run_id=run_id,
        success=success,
        error=error,
        quarantined=quarantined,
        drifted_share=drift.drifted_share if drift else None,
        retrained=training is not None,
        strategy=training.strategy if training else None,
        deployed_version=deployment.version if deployment else None,
        promoted=deployment.promoted if deployment else None,
        serving_version=(deployment.serving_version if deployment else None)
        or (drift.champion_version if drift else None),
        served_auc=drift.champion_auc if drift else None,
        energy_kwh=energy.energy_kwh,
        emissions_kg_co2eq=energy.emissions_kg_co2eq,
        unmeasured_steps=energy.unmeasured,
    )


def _failure(instance: DagsterInstance, run_id: str) -> tuple[str, bool]:
    """The failed run's first error as ``<step>: <message>``, and whether the run is quarantined: every failed step
    says so in its ``Failure`` metadata (``refusals_not_retried``). A failure without that metadata (an unexpected
    exception, an IO manager's refusal that Dagster wraps, a run that failed before any step) is never quarantined."""
    messages: list[str] = []
    quarantined = True
    for event in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = event.dagster_event.step_failure_data if event.dagster_event else None
        if data and data.error:
            cause = data.error.cause or data.error
            messages.append(f"{event.step_key}: {cause.message.strip()}")
        flag = data.user_failure_data.metadata.get(QUARANTINED) if data and data.user_failure_data else None
        quarantined = quarantined and flag is not None and flag.value is True
    if messages:
        return messages[0], quarantined
    # Settings rejected while resources start (e.g. a threshold out of range) fail the run, not a step.
    for event in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        run_failure = event.dagster_event.job_failure_data if event.dagster_event else None
        if run_failure and run_failure.error:
            return f"run: {(run_failure.error.cause or run_failure.error).message.strip()}", False
    return "the run failed; see its logs in the Dagster UI", False
