"""Dagster resources: where data, models and artefacts live, energy settings, and the retrain policy.

Defaults make the built-in demo work from the repository root; secrets come only through ``EnvVar``.
"""

import contextlib
import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

import pandas as pd
from dagster import (
    AssetRecordsFilter,
    ConfigurableResource,
    Failure,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
    ResourceDependency,
    io_manager,
)
from pydantic import Field, PrivateAttr, TypeAdapter

from green_pipeline import files
from green_pipeline.budget import Budget, BudgetSettings, BudgetSeverity
from green_pipeline.carbon_deferral import DeferralSettings
from green_pipeline.carbon_intensity import (
    CarbonIntensityError,
    CsvIntensityProvider,
    HttpIntensityProvider,
    IntensityProvider,
)
from green_pipeline.data import memory_budget
from green_pipeline.drift_sampling import DriftSettings
from green_pipeline.energy import EnergySettings
from green_pipeline.errors import GreenPipelineError
from green_pipeline.mlflow_logging import MlflowSettings, require_mlflow
from green_pipeline.monitoring import MonitoringThresholds
from green_pipeline.policy import StrategyRules
from green_pipeline.records import RECORD_TYPES
from green_pipeline.schema import DatasetSpec
from green_pipeline.store import DeployedModel, ModelStore
from green_pipeline.training import TrainingSettings

DEFAULT_ROOT = ".green_pipeline"
#: Materialization metadata naming the stored output, which later runs read back.
ARTIFACT_URL = "artifact_url"


class ObjectStorage(ConfigurableResource):
    """Endpoint and credentials for s3:// URLs; local paths ignore them. Pass secrets as EnvVar."""

    endpoint_url: str | None = None
    region_name: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    request_attempts: int | None = Field(
        default=None,
        ge=1,
        description="Tries of one S3 request before the step fails (botocore's total_max_attempts; None keeps "
        "its default, about 5 s against an unreachable endpoint). The jobs' RetryPolicy then reruns the step.",
    )

    def options_for(self, url: str) -> dict[str, Any]:
        if not url.startswith(("s3://", "s3a://")):
            return {}
        client_kwargs = {
            k: v for k, v in {"endpoint_url": self.endpoint_url, "region_name": self.region_name}.items() if v
        }
        options: dict[str, Any] = {"client_kwargs": client_kwargs}
        if self.access_key_id and self.secret_access_key:
            options |= {"key": self.access_key_id, "secret": self.secret_access_key}
        if self.request_attempts is not None:
            options["config_kwargs"] = {"retries": {"total_max_attempts": self.request_attempts}}
        return options


class DatasetResource(ConfigurableResource):
    """Where batches arrive (folder or s3:// prefix) and which columns are label, features, categoricals."""

    data_url: str = f"{DEFAULT_ROOT}/data"
    label: str = "churned"
    features: list[str] | None = None
    categorical: list[str] | None = None
    max_rows: int | None = Field(default=None, gt=0, description="A batch with more rows is refused.")
    max_bytes: int | None = Field(default=None, gt=0, description="A larger batch file is refused before download.")
    max_memory_fraction: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="A batch whose read would take more than this share of the memory available is refused "
        "before it is decoded (estimated from its first rows); the steps after it hold a few copies of it.",
    )
    storage: ResourceDependency[ObjectStorage]

    def memory_budget(self) -> int:
        return memory_budget(self.max_memory_fraction)

    def spec(self) -> DatasetSpec:
        return DatasetSpec(
            label=self.label,
            features=tuple(self.features) if self.features is not None else None,
            categorical=tuple(self.categorical) if self.categorical is not None else None,
        )

    def storage_options(self) -> dict[str, Any]:
        return self.storage.options_for(self.data_url)


class ModelStoreResource(ConfigurableResource):
    """The versioned model store (local path or s3:// URL) and the name of the model in it."""

    store_url: str = f"{DEFAULT_ROOT}/store"
    model_name: str = "churn"
    storage: ResourceDependency[ObjectStorage]

    _verified: dict[str, DeployedModel] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Each run starts with nothing verified, so every run checks the checksums of what it loads."""
        self._verified = {}

    def store(self) -> ModelStore:
        return ModelStore(self.store_url, self.model_name, self.storage.options_for(self.store_url))

    def champion(self, version: str) -> DeployedModel:
        """``version`` as this run first loaded and verified it: the steps of a run share one champion."""
        if version not in self._verified:
            self._verified[version] = self.store().load(version)
        return self._verified[version]


class EnergyResource(ConfigurableResource):
    """Country (ISO 3166 alpha-3) whose grid carbon intensity codecarbon applies; there is no network lookup."""

    country_iso_code: str | None = Field(
        default=None,
        min_length=3,
        max_length=3,
        description="Where the machine runs, e.g. FRA or USA. Default: codecarbon's world average grid intensity, "
        "with a warning (energy_method says so).",
    )
    region: str | None = None
    enabled: bool = True
    cpu_tdp_w: float | None = Field(
        default=None,
        gt=0,
        description="The CPU's power at full load (TDP, all sockets) when codecarbon does not know this CPU model; "
        "each busy thread is charged this / logical CPUs. Default: codecarbon's figure (see energy_method).",
    )

    def settings(self) -> EnergySettings:
        return EnergySettings(
            country_iso_code=self.country_iso_code.upper() if self.country_iso_code else None,
            region=self.region,
            enabled=self.enabled,
            cpu_tdp_w=self.cpu_tdp_w,
        )


class RetrainPolicy(ConfigurableResource):
    """When to retrain, which strategy to try first, when to escalate, and what may be deployed."""

    drift_share_threshold: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted feature columns that triggers a retrain."
    )
    quality_drop_threshold_auc: float = Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="Drop of the serving model's AUC on a labelled batch (vs at deployment) that triggers a retrain "
        "and marks a concept drift: refit is skipped and no old reference rows are mixed in.",
    )
    promotion_tolerance_auc: float = Field(
        default=0.005,
        ge=0.0,
        le=0.2,
        description="How much AUC a challenger may lose to the champion and still be promoted.",
    )
    compression_auc_tolerance: float = Field(
        default=0.005,
        ge=0.0,
        le=0.2,
        description="AUC the compressed model may lose against the uncompressed one.",
    )
    always_retrain: bool = Field(
        default=False, description="Baseline of today's practice: full retrain on every batch."
    )
    severe_drift_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Drifted share from which refit is skipped: start at warm start."
    )
    severe_column_drift: float = Field(
        default=5.0,
        gt=0.0,
        description="A drifted column this many times past its test threshold skips refit: start at warm start.",
    )
    min_rows_new_trees: int = Field(
        default=1000, ge=0, description="Fewer labelled rows than this: only refit is tried (no new trees)."
    )
    reference_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=10.0,
        description="Rows of the champion's reference data mixed into warm start and full retrain, "
        "as a fraction of the new training rows.",
    )
    min_gain_auc: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        description="Validation AUC a candidate must gain over the champion for escalation to stop.",
    )
    refit_decay_rate: float = Field(
        default=0.5, ge=0.0, lt=1.0, description="Weight of the old leaf values when refitting."
    )
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(default=31, ge=2, le=1024)
    max_trees_full: int = Field(default=500, ge=1)
    max_new_trees_warm_start: int = Field(default=150, ge=1)
    early_stopping_rounds: int = Field(default=40, ge=1)
    early_stopping_rounds_warm_start: int = Field(
        default=10, ge=1, description="Patience of a warm start, which only learns the residual error."
    )
    drift_sample_rows: int = Field(
        default=50_000,
        ge=0,
        description="Rows of the batch and of the reference the drift tests see: larger sides are sampled "
        "(seeded, without replacement) with an error bound in the report. 0 tests every row.",
    )
    drift_sample_seed: int = Field(default=0, description="Seed of the drift sampling, so a run can be repeated.")
    drift_confidence: float = Field(
        default=0.99, ge=0.5, lt=1.0, description="Confidence of the sampling error bounds of the drift report."
    )
    drift_report_columns: int = Field(
        default=12,
        ge=1,
        description="Columns the HTML drift report details (drifted and near-threshold first, then by score); "
        "every column is tested, and its plots cost about 40 ms each.",
    )

    def drift_settings(self) -> DriftSettings:
        return DriftSettings(
            self.drift_sample_rows, self.drift_sample_seed, self.drift_confidence, self.drift_report_columns
        )

    def thresholds(self) -> MonitoringThresholds:
        return MonitoringThresholds(
            self.drift_share_threshold, self.quality_drop_threshold_auc, self.always_retrain, self.strategy_rules()
        )

    def strategy_rules(self) -> StrategyRules:
        return StrategyRules(
            severe_drift_share=self.severe_drift_share,
            severe_column_drift=self.severe_column_drift,
            min_rows_new_trees=self.min_rows_new_trees,
            reference_fraction=self.reference_fraction,
            min_gain_auc=self.min_gain_auc,
        )

    def training_settings(self) -> TrainingSettings:
        return TrainingSettings(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            max_trees_full=self.max_trees_full,
            max_new_trees_warm_start=self.max_new_trees_warm_start,
            early_stopping_rounds=self.early_stopping_rounds,
            early_stopping_rounds_warm_start=self.early_stopping_rounds_warm_start,
            refit_decay_rate=self.refit_decay_rate,
        )


class CarbonAwareScheduling(ConfigurableResource):
    """Carbon-aware deferral of non-urgent retrains by the drift sensor: intensity source, zone, deadline, urgency.

    Off by default: the packaged profile is an EXAMPLE, not real grid data. For real figures use
    ``provider="http"`` with an Electricity Maps style ``api_url`` and ``api_token=EnvVar("...")``.
    """

    enabled: bool = Field(default=False, description="Defer non-urgent retrains to the cleanest window.")
    provider: str = Field(default="csv", pattern="^(csv|http)$", description="csv (offline profile) or http.")
    zone: str = Field(default="EXAMPLE-SOLAR", min_length=1, description="Grid zone, e.g. FR for the HTTP API.")
    profile_path: str | None = Field(
        default=None, description="CSV zone,hour,g_co2_per_kwh; default: the packaged EXAMPLE profile."
    )
    api_url: str | None = Field(default=None, description="e.g. https://api.electricitymap.org/v3")
    api_token: str | None = Field(default=None, description="Sent as the auth-token header; pass an EnvVar.")
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    deadline_hours: float = Field(
        default=12.0, gt=0.0, le=168.0, description="A deferred retrain starts by this long after its drift report."
    )
    expected_duration_hours: float = Field(
        default=0.25, gt=0.0, le=24.0, description="How long a retraining run lasts: the window to keep clean."
    )
    urgent_drift_share: float = Field(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="From this drifted share a retrain never waits (keep it above policy.drift_share_threshold).",
    )
    urgent_auc_drop: float = Field(
        default=0.1, gt=0.0, le=1.0, description="From this drop of the serving model's AUC a retrain never waits."
    )

    def intensity_provider(self) -> IntensityProvider:
        if self.provider == "csv":
            return CsvIntensityProvider(self.profile_path)
        if not self.api_url:
            raise CarbonIntensityError("carbon_aware.api_url is required when carbon_aware.provider is 'http'.")
        return HttpIntensityProvider(self.api_url, self.api_token, self.timeout_s)

    def deferral_settings(self) -> DeferralSettings:
        return DeferralSettings(
            zone=self.zone,
            deadline=timedelta(hours=self.deadline_hours),
            expected_duration=timedelta(hours=self.expected_duration_hours),
            urgent_drift_share=self.urgent_drift_share,
            urgent_auc_drop=self.urgent_auc_drop,
        )


class ArtifactStorage(ConfigurableResource):
    """Where step outputs and reports of runs are kept (local path or s3:// URL)."""

    base_url: str = f"{DEFAULT_ROOT}/artifacts"
    storage: ResourceDependency[ObjectStorage]

    def url(self, *parts: str) -> str:
        """``base_url`` joined with ``parts``, each one plain name: a partition key inside one cannot leave it."""
        return files.join(self.base_url, *map(files.validate_batch_key, parts))

    def write(self, url: str, payload: bytes) -> None:
        files.write_bytes_atomic(url, payload, self.storage.options_for(url))

    def exists(self, url: str) -> bool:
        return files.exists(url, self.storage.options_for(url))

    def read(self, url: str) -> bytes | None:
        return files.read_bytes(url, self.storage.options_for(url)) if self.exists(url) else None


class ArtifactIOManager(IOManager):
    """Stores step outputs as artefacts: DataFrames as Parquet, records as JSON; every write is atomic.

    Each output is kept per asset, partition and run (``<asset>/<partition>/<run id>.<suffix>``), so two runs of
    one batch never read each other's outputs: a step reads what its own run produced, and a run that did not
    produce an input (a retraining job after a monitoring run) reads the one its latest materialization recorded.
    Dagster's default IO manager pickles and writes in place; this one never unpickles and never leaves a
    truncated file where the event log says a complete one is.
    """

    def __init__(self, artifacts: ArtifactStorage) -> None:
        self.artifacts = artifacts

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        with refusals_not_retried():
            self._store(context, obj)

    def load_input(self, context: InputContext) -> Any:
        with refusals_not_retried():
            return self._load(context)

    def _store(self, context: OutputContext, obj: Any) -> None:
        if isinstance(obj, pd.DataFrame):
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            payload, suffix = buffer.getvalue(), "parquet"
        elif dataclasses.is_dataclass(obj) and type(obj).__name__ in RECORD_TYPES:
            body = TypeAdapter(type(obj)).dump_python(obj, mode="json")
            payload, suffix = json.dumps({"type": type(obj).__name__, "value": body}).encode(), "json"
        else:
            raise GreenPipelineError(f"{context.asset_key.to_user_string()}: cannot store a {type(obj).__name__}.")
        url = self.artifacts.url(*context.asset_key.path, _partition(context), f"{context.run_id}.{suffix}")
        self.artifacts.write(url, payload)
        context.add_output_metadata({ARTIFACT_URL: url})

    def _load(self, context: InputContext) -> Any:
        url = self._source_url(context)
        payload = self.artifacts.read(url) if url else None
        if payload is None:
            # Retrying cannot make a missing upstream output appear: fail at once, past the jobs' RetryPolicy.
            raise Failure(
                description=f"{context.asset_key.to_user_string()}: no stored output under "
                f"{self.artifacts.base_url}; materialize the upstream asset for this partition first.",
                allow_retries=False,
            )
        if url.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(payload))
        document = json.loads(payload)
        return TypeAdapter(RECORD_TYPES[document["type"]]).validate_python(document["value"])

    def _source_url(self, context: InputContext) -> str | None:
        """This run's output of the upstream asset if it made one, else the one its latest materialization names."""
        partition = _partition(context)
        this_run = context.step_context.run_id
        for suffix in ("parquet", "json"):
            url = self.artifacts.url(*context.asset_key.path, partition, f"{this_run}.{suffix}")
            if self.artifacts.exists(url):
                return url
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=context.asset_key, asset_partitions=[partition] if context.has_asset_partitions else None
            ),
            limit=1,
        ).records
        materialization = records[0].asset_materialization if records else None
        recorded = materialization.metadata.get(ARTIFACT_URL) if materialization else None
        return str(recorded.value) if recorded is not None else None


@contextlib.contextmanager
def refusals_not_retried() -> Iterator[None]:
    """A ``GreenPipelineError`` (bad input, integrity, config) would fail the same way again: it becomes a ``Failure``
    that the jobs' ``RetryPolicy`` does not retry, prefixed by the error's class so the UI says what kind it is."""
    try:
        yield
    except GreenPipelineError as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def _partition(context: InputContext | OutputContext) -> str:
    return context.asset_partition_key if context.has_asset_partitions else "__all__"


@io_manager(required_resource_keys={"artifacts"})
def artifact_io_manager(init_context: InitResourceContext) -> ArtifactIOManager:
    """Built on the run's configured ``artifacts`` resource, so its base URL is the one the run was given."""
    return ArtifactIOManager(init_context.resources.artifacts)


class CheckThresholds(ConfigurableResource):
    """Limits the asset checks enforce: a quality floor that blocks deployment, and energy budgets.

    A budget whose severity is ``block`` also skips retraining while it is exhausted (see green_pipeline.budget).
    """

    quality_floor_auc: float = Field(
        default=0.65, ge=0.0, le=1.0, description="A compressed model below this test AUC is never deployed."
    )
    energy_budget_per_run_kwh: float = Field(
        default=0.001, gt=0.0, description="A run that spends more than this is flagged by the ledger's check."
    )
    energy_budget_per_run_severity: Literal["warn", "block"] = Field(
        default="warn",
        description="warn: flag runs over budget; block: also skip a retraining that the run's spend so far plus "
        "the last measured retraining would push over budget.",
    )
    energy_budget_per_month_kwh: float = Field(
        default=0.03,
        gt=0.0,
        description="Measured energy of all steps in a UTC calendar month beyond which drift_report's check fails "
        "(default: 30 daily runs at the per-run budget).",
    )
    energy_budget_per_month_severity: Literal["warn", "block"] = Field(
        default="warn",
        description="warn: the check fails as a warning; block: retraining is skipped until the month ends "
        "(monitoring and scoring go on).",
    )

    def budgets(self) -> BudgetSettings:
        return BudgetSettings(
            per_run=Budget(self.energy_budget_per_run_kwh, BudgetSeverity(self.energy_budget_per_run_severity)),
            per_month=Budget(self.energy_budget_per_month_kwh, BudgetSeverity(self.energy_budget_per_month_severity)),
        )


class MlflowTracking(ConfigurableResource):
    """Where trainings are logged to MLflow; off while ``tracking_uri`` is None.

    Set the URI in run config (e.g. ``tracking_uri: {env: MLFLOW_TRACKING_URI}``, or ``EnvVar`` in code) and
    install the extra: ``pip install green-pipeline[mlflow]``.
    """

    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI; None turns tracking off.")
    experiment_name: str = Field(default="green-pipeline", min_length=1)

    def settings(self) -> MlflowSettings | None:
        """The settings when tracking is on, after checking MLflow is installed (before any training starts)."""
        if not self.tracking_uri:
            return None
        require_mlflow("mlflow_tracking.tracking_uri")
        return MlflowSettings(self.tracking_uri, self.experiment_name)
