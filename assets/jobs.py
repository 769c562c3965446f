"""Jobs over the batch-partitioned assets, and the engine (Dagster executor) the batch jobs run on.

The engine is named by ``GREEN_PIPELINE_EXECUTOR`` (``in_process``, the default: every step in the run's
process, no forks; ``dask``; ``k8s``; see docs/DISTRIBUTED.md), read once when the definitions load. One
variable rather than ``*_dask``/``*_k8s`` copies of each job because the schedules, sensors, run-queue tag
limits, the runner and the ledger all find runs by job name: with one name per job they work unchanged on
every engine. Every process that loads this code (code server, daemon, run worker, Dask workers, step pods)
must see the same value, since each rebuilds the job and checks the run's config against it. ``batch_jobs``
builds the jobs for any executor, so a runner or a test can pick an engine explicitly (``definitions.engine_job``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    Backoff,
    ExecutorDefinition,
    Jitter,
    RetryPolicy,
    define_asset_job,
    in_process_executor,
)

from green_pipeline.assets.engines import EXECUTOR_ENV, engine_executor

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

#: Runs sharing this tag value are serialized by the queued run coordinator (see dagster.yaml), because
#: each batch is judged against the model the previous batch deployed.
MODEL_LANE_TAG = {"green_pipeline/lane": "model"}

#: A step that raised anything but a GreenPipelineError (those become non-retried Failures in metering.py), e.g.
#: S3 unreachable or timing out, is run again after about 1, 3 and 7 s: outages shorter than ~10 s heal alone.
TRANSIENT_FAULT_RETRIES = RetryPolicy(max_retries=3, delay=1.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

MONITORING_ASSETS = AssetSelection.assets("ingested_batch", "validated_batch", "drift_report", "predictions")
RETRAINING_ASSETS = AssetSelection.assets("retrained_model", "model_evaluation", "compressed_model", "deployed_model")


def batch_jobs(
    executor_def: ExecutorDefinition,
) -> tuple[UnresolvedAssetJobDefinition, UnresolvedAssetJobDefinition, UnresolvedAssetJobDefinition]:
    """The pipeline, monitoring and retraining jobs on ``executor_def``; the same names on every engine."""
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


#: The engine this process loaded the batch jobs on.
SELECTED_ENGINE = os.environ.get(EXECUTOR_ENV, "in_process")
green_pipeline_job, monitoring_job, retraining_job = batch_jobs(engine_executor(SELECTED_ENGINE))

# Reading the event log is light work: it stays in process whatever the engine.
energy_ledger_job = define_asset_job(
    "energy_ledger_job",
    selection=AssetSelection.assets("energy_ledger"),
    executor_def=in_process_executor,
    description="Refresh the energy ledger (per asset, per run, avoided energy, chart) from the event log.",
)
