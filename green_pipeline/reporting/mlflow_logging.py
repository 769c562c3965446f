"""Optional MLflow tracking: each training's params, metrics, energy and CO2, beside the model metrics.

MLflow is imported only when a tracking URI is configured, so the default install does without it
(``pip install green-pipeline[mlflow]`` adds it). Logging goes through ``MlflowClient`` with an explicit
URI, never MLflow's process-global active run, so steps running side by side cannot log into each other's
runs. One MLflow run per training, found again by its Dagster run id and batch: the retraining step opens
it, the deployment step adds the test AUC, the energy KPIs and the model version. A tracking failure is
reported (logged and returned), never allowed to discard a training whose energy is already spent.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_pipeline.energy.measurement import EnergyStatus, complete_sum
from green_pipeline.errors import InvalidConfigError
from green_pipeline.records import CandidateModel, ChampionComparison, CompressedModel, Deployment
from green_pipeline.serving.release import EnergyKpis
from green_pipeline.training.retraining import RetrainingOutcome
from green_pipeline.training.trainer import TrainingSettings

INSTALL_HINT = "pip install green-pipeline[mlflow]"
RUN_TAG = "dagster_run_id"
BATCH_TAG = "batch"
#: MLflow refuses longer tag values (5,000 characters before 2.x, 8,000 since); reasons and methods are cut.
MAX_TAG_CHARS = 5000
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    experiment_name: str = "green-pipeline"


@dataclass(frozen=True)
class RunRecord:
    """What to log on the MLflow run of one training (params are written once, metrics and tags may grow)."""

    dagster_run_id: str
    batch: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]


@dataclass(frozen=True)
class TrackingResult:
    """The MLflow run logged to, or why logging failed."""

    run_id: str | None
    error: str | None = None

    def as_metadata(self) -> dict[str, str]:
        return {"mlflow_run_id": self.run_id} if self.run_id else {"mlflow_error": self.error or "unknown"}


def require_mlflow(setting: str) -> None:
    """Fail before any energy is spent when tracking is configured but MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise InvalidConfigError(f"{setting} is set but MLflow is not installed: {INSTALL_HINT}, or unset {setting}.")


def training_record(
    outcome: RetrainingOutcome, candidate: CandidateModel, settings: TrainingSettings, dagster_run_id: str
) -> RunRecord:
    """Params of the chosen training, valid AUC of every attempt, and energy/CO2 per attempt and in total.

    The totals are logged only when every attempt has figures (measured or estimated); otherwise the tag
    ``energy_status`` says ``unmeasured`` and only the attempts with figures carry them.
    """
    params = {
        **{key: str(value) for key, value in dataclasses.asdict(settings).items()},
        "strategy": outcome.result.strategy.value,
        "strategies_tried": ", ".join(s.value for s in outcome.strategies_tried),
        "batch": candidate.batch,
        "parent_version": candidate.parent_version or "none",
        "trees": str(candidate.trees),
        "new_trees": str(candidate.new_trees),
        "train_rows": str(candidate.train_rows),
        "reference_rows": str(outcome.result.extra_rows),
    }
    metrics: dict[str, float | None] = {
        "valid_auc": outcome.result.valid_auc,
        "champion_valid_auc": outcome.champion_valid_auc,
        "quality_bar_auc": outcome.bar.auc if outcome.bar else None,
    }
    reports = [attempt.energy for attempt in outcome.attempts]
    for attempt in outcome.attempts:
        prefix = f"attempt_{attempt.strategy.value}"
        metrics |= {
            f"{prefix}_valid_auc": attempt.result.valid_auc,
            f"{prefix}_energy_kwh": attempt.energy.energy_kwh,
            f"{prefix}_emissions_kg_co2eq": attempt.energy.emissions_kg_co2eq,
            f"{prefix}_duration_s": attempt.energy.duration_s,
        }
    metrics["energy_kwh"] = outcome.energy_kwh
    metrics["emissions_kg_co2eq"] = complete_sum(r.emissions_kg_co2eq for r in reports)
    tags = {
        "energy_status": EnergyStatus.of_total(r.status for r in reports).value,
        "energy_method": reports[-1].method,
        "reason": outcome.reason,
    }
    return RunRecord(dagster_run_id, candidate.batch, params, _numbers(metrics), tags)


def release_record(
    compressed: CompressedModel,
    comparison: ChampionComparison,
    deployment: Deployment,
    kpis: EnergyKpis,
    dagster_run_id: str,
) -> RunRecord:
    """Test AUC, energy KPIs and the published version, added to the run of the training that produced it."""
    metrics = {
        "test_auc": compressed.test_auc,
        "champion_test_auc": comparison.champion_auc,
        "auc_gain": kpis.auc_gain,
        "production_energy_kwh": kpis.production_energy_kwh,
        "quality_per_kwh": kpis.quality_per_kwh,
        "energy_per_1k_predictions_kwh": kpis.energy_per_1k_predictions_kwh,
        "model_size_bytes": float(compressed.size_bytes_after),
    }
    tags = {
        "model_version": deployment.version,
        "promoted": str(deployment.promoted).lower(),
        "compression": compressed.technique,
        "auc_gain_baseline": kpis.baseline,
        "quality_per_kwh_status": kpis.quality_per_kwh_status.value,
    }
    return RunRecord(dagster_run_id, compressed.model.batch, {}, _numbers(metrics), tags)


def _numbers(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """MLflow metrics are numbers: an unknown or unmeasured figure is left out, never logged as zero."""
    return {key: float(value) for key, value in metrics.items() if value is not None}


def log_run(settings: MlflowSettings, record: RunRecord) -> TrackingResult:
    """Log ``record`` on the run of its Dagster run and batch in the experiment, creating either if needed."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise InvalidConfigError(
            f"an MLflow tracking URI is set but MLflow cannot be imported: {INSTALL_HINT}"
        ) from exc
    now_ms = int(time.time() * 1000)
    try:
        client = MlflowClient(tracking_uri=settings.tracking_uri)
        run_id = _run_for(client, _experiment_id(client, settings.experiment_name), record)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now_ms, 0) for key, value in record.metrics.items()],
            params=[Param(key, value) for key, value in record.params.items()],
            tags=[RunTag(key, value[:MAX_TAG_CHARS]) for key, value in record.tags.items()],
        )
        client.set_terminated(run_id)
    except (MlflowException, OSError) as exc:
        message = f"MLflow logging to {settings.tracking_uri} failed: {type(exc).__name__}: {exc}"
        logger.warning(message)
        return TrackingResult(None, message)
    return TrackingResult(run_id)


def tracking_metadata(settings: MlflowSettings | None, record: RunRecord) -> dict[str, str]:
    """Log ``record`` when tracking is on; what the step's metadata says about it (nothing when tracking is off)."""
    return {} if settings is None else log_run(settings, record).as_metadata()


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return str(experiment.experiment_id if experiment is not None else client.create_experiment(name))


def _run_for(client: Any, experiment_id: str, record: RunRecord) -> str:
    """The run already opened for this Dagster run and batch, or a new one tagged with them."""
    # Dagster run ids are UUIDs, safe inside a filter string; the batch (a file name) is compared here.
    found = client.search_runs([experiment_id], filter_string=f"tags.{RUN_TAG} = '{record.dagster_run_id}'")
    for run in found:
        if run.data.tags.get(BATCH_TAG) == record.batch:
            return str(run.info.run_id)
    tags = {RUN_TAG: record.dagster_run_id, BATCH_TAG: record.batch}
    return str(client.create_run(experiment_id, tags=tags, run_name=record.batch).info.run_id)
