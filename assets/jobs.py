"""Jobs over the batch-partitioned assets, and the executor they run on.

Runs go in process by default, from the CLI and from the UI alike: a fresh process per step costs seconds and
energy (Dagster's import and the power model in each). ``GREEN_PIPELINE_EXECUTOR`` names another of Dagster's own
executors, read once when the definitions load: ``multiprocess`` where isolation is wanted, ``k8s``
(``dagster_k8s.k8s_job_executor``, the ``k8s`` extra) where more machines are; see docs/DISTRIBUTED.md. Every
process that loads this code (code server, daemon, run worker, step pods) must see the same value. Job names stay
the same on every executor, so schedules, sensors, the run queue's lane, the runner and the ledger work unchanged.
"""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    Backoff,
    ExecutorDefinition,
    Jitter,
    RetryPolicy,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)

from green_pipeline.assets.monitoring import drift_report_html
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.metadata import ENERGY_LEDGER, MONITORING_STEPS, RETRAINING_STEPS

EXECUTOR_ENV = "GREEN_PIPELINE_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")

#: Runs sharing this tag value are serialized by the queued run coordinator (see dagster.yaml), because
#: each batch is judged against the model the previous batch deployed.
MODEL_LANE_TAG = {"green_pipeline/lane": "model"}

#: A step that raised anything but a GreenPipelineError (those become non-retried Failures in metering.py), e.g.
#: S3 unreachable or timing out, is run again after about 1, 3 and 7 s: outages shorter than ~10 s heal alone.
TRANSIENT_FAULT_RETRIES = RetryPolicy(max_retries=3, delay=1.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

MONITORING_ASSETS = AssetSelection.assets(*MONITORING_STEPS)
RETRAINING_ASSETS = AssetSelection.assets(*RETRAINING_STEPS)


def batch_jobs(executor_def: ExecutorDefinition):  # type: ignore[no-untyped-def]  # its type is not public
    """The pipeline, monitoring and retraining jobs on ``executor_def``; the same names on every executor."""
    pipeline = define_asset_job(
        "green_pipeline_job",
        selection=MONITORING_ASSETS | RETRAINING_ASSETS,
        executor_def=executor_def,
        tags=MODEL_LANE_TAG,
        op_retry_policy=TRANSIENT_FAULT_RETRIES,
        description="A batch end to end: ingest, validate, drift; retrain, evaluate, compress, deploy only if needed.",
    )
    monitoring = define_asset_job(
        "monitoring_job",
        selection=MONITORING_ASSETS,
        executor_def=executor_def,
        tags=MODEL_LANE_TAG,
        op_retry_policy=TRANSIENT_FAULT_RETRIES,
        description="Ingest, validate and check drift; the drift sensor launches retraining when it is needed.",
    )
    retraining = define_asset_job(
        "retraining_job",
        selection=RETRAINING_ASSETS,
        executor_def=executor_def,
        tags=MODEL_LANE_TAG,
        op_retry_policy=TRANSIENT_FAULT_RETRIES,
        description="Retrain, evaluate, compress and deploy for a batch whose drift report asks for it.",
    )
    return pipeline, monitoring, retraining


def selected_executor(name: str) -> ExecutorDefinition:
    """Dagster's executor called ``name``, or an error naming the setting (and the extra k8s needs)."""
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor
    if name != "k8s":
        raise InvalidConfigError(f"{EXECUTOR_ENV}={name!r} is not one of {', '.join(EXECUTORS)}.")
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise InvalidConfigError(
            f"{EXECUTOR_ENV}=k8s: {exc.name} is not installed; pip install 'green-pipeline[k8s]'."
        ) from exc
    return k8s_job_executor


green_pipeline_job, monitoring_job, retraining_job = batch_jobs(
    selected_executor(os.environ.get(EXECUTOR_ENV, "in_process"))
)

# Reading the event log is light work: it stays in process whatever the engine.
energy_ledger_job = define_asset_job(
    "energy_ledger_job",
    selection=AssetSelection.assets(ENERGY_LEDGER),
    executor_def=in_process_executor,
    description="Refresh the energy ledger (per asset, per run, avoided energy, chart) from the event log.",
)

# One step that only reads the model store: in process, outside the model lane, so it never waits for a retrain.
drift_report_html_job = define_asset_job(
    "drift_report_html_job",
    selection=AssetSelection.assets(drift_report_html),
    executor_def=in_process_executor,
    description="Render a batch's HTML drift report, which its run skipped when nothing called for reading it.",
)
