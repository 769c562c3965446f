"""The code location: every asset, job, sensor, schedule and resource of green-pipeline in one place."""

from dagster import Definitions

from green_pipeline.assets.checks import (
    drift_below_threshold,
    energy_budget_per_month,
    energy_budget_per_run,
    quality_floor,
)
from green_pipeline.assets.compression import compressed_model
from green_pipeline.assets.deployment import deployed_model
from green_pipeline.assets.ingestion import ingested_batch, validated_batch
from green_pipeline.assets.jobs import (
    drift_report_html_job,
    energy_ledger_job,
    green_pipeline_job,
    monitoring_job,
    retraining_job,
)
from green_pipeline.assets.monitoring import drift_report, drift_report_html
from green_pipeline.assets.reporting import energy_ledger
from green_pipeline.assets.scoring import predictions
from green_pipeline.assets.training import model_evaluation, retrained_model
from green_pipeline.orchestration.io_manager import artifact_io_manager
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    CarbonAwareScheduling,
    CheckThresholds,
    DaskResource,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    ObjectStorage,
    RetrainPolicy,
)
from green_pipeline.sensors.drift import drift_retraining_sensor
from green_pipeline.sensors.new_data import new_batch_sensor
from green_pipeline.sensors.schedules import daily_ledger_schedule, daily_pipeline_schedule


def build_resources() -> dict[str, object]:
    """Resources with demo defaults; run config (or the CLI's --config file) overrides any field."""
    # Configured at launch under "object_storage" and shared by every resource that reads or writes URLs.
    storage = ObjectStorage.configure_at_launch()
    artifacts = ArtifactStorage.configure_at_launch(storage=storage)
    return {
        "object_storage": storage,
        "artifacts": artifacts,
        "artifact_io_manager": artifact_io_manager,
        "dataset": DatasetResource(storage=storage),
        "model_store": ModelStoreResource(storage=storage),
        "energy": EnergyResource(),
        "policy": RetrainPolicy(),
        "check_thresholds": CheckThresholds(),
        # Off until tracking_uri is set, e.g. in run config: {"tracking_uri": {"env": "MLFLOW_TRACKING_URI"}}.
        "mlflow_tracking": MlflowTracking(),
        # Read by the drift sensor (deferral) and retrained_model (actual intensity); off by default.
        "carbon_aware": CarbonAwareScheduling(),
        # The cluster of the steps past dataset.max_local_bytes; started only when a batch needs it.
        "dask": DaskResource(),
    }


defs = Definitions(
    assets=[
        ingested_batch,
        validated_batch,
        drift_report,
        drift_report_html,
        retrained_model,
        model_evaluation,
        compressed_model,
        deployed_model,
        predictions,
        energy_ledger,
    ],
    asset_checks=[drift_below_threshold, quality_floor, energy_budget_per_run, energy_budget_per_month],
    jobs=[green_pipeline_job, monitoring_job, retraining_job, energy_ledger_job, drift_report_html_job],
    sensors=[new_batch_sensor, drift_retraining_sensor],
    schedules=[daily_pipeline_schedule, daily_ledger_schedule],
    resources=build_resources(),
)
