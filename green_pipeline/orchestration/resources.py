"""Dagster resources: where data, models and artefacts live, energy settings, and the retrain policy.

Defaults make the built-in demo work from the repository root; secrets come only through ``EnvVar``. A resource
that mirrors a core settings dataclass takes its defaults from it and builds it with ``to_settings()`` (one
per dataclass), so each default is written once, in the core (tests/unit/test_settings_defaults.py).
"""

from typing import Any, Literal

from dagster import (
    ConfigurableResource,
    InitResourceContext,
    ResourceDependency,
)
from distributed import Client
from pydantic import Field, PrivateAttr

from green_pipeline.carbon.deferral import DeferralSettings
from green_pipeline.carbon.intensity import (
    HOUR,
    TIMEOUT_S,
    CarbonIntensityError,
    CsvIntensityProvider,
    HttpIntensityProvider,
    IntensityProvider,
)
from green_pipeline.compression.search import CompressionSettings
from green_pipeline.data.batches import DEFAULT_MAX_LOCAL_BYTES, memory_budget
from green_pipeline.data.schema import DatasetSpec
from green_pipeline.demo.stream import LABEL
from green_pipeline.distributed.cluster import Cluster, ClusterSettings, connect
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.drift.sampling import DriftSettings, HtmlReport
from green_pipeline.energy.budget import Budget, BudgetSettings, BudgetSeverity
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.reporting.mlflow_logging import MlflowSettings, require_mlflow
from green_pipeline.store import files
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.policy import StrategyRules
from green_pipeline.training.trainer import TrainingSettings
from green_pipeline.training.transfer import TransferSource, load_source
from green_pipeline.training.tuning import TuningSettings

DEFAULT_ROOT = ".green_pipeline"
_ENERGY, _TRAINING, _RULES = EnergySettings(), TrainingSettings(), StrategyRules()
_DRIFT, _THRESHOLDS, _COMPRESSION = DriftSettings(), MonitoringThresholds(), CompressionSettings()
_DEFERRAL, _BUDGETS, _TUNING = DeferralSettings(), BudgetSettings(), TuningSettings()
_CLUSTER = ClusterSettings()


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
    label: str = LABEL
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
    max_local_bytes: int = Field(
        default=DEFAULT_MAX_LOCAL_BYTES,
        gt=0,
        description="A Parquet dataset batch whose columns would take more memory than this once decoded (estimated "
        "from its first rows) is processed part by part on the Dask cluster (the dask resource); below it, its parts "
        "are read into one frame and the steps run in their process. Single files always run in process.",
    )
    storage: ResourceDependency[ObjectStorage]

    def memory_budget(self) -> int:
        return memory_budget(self.max_memory_fraction)

    def to_settings(self) -> DatasetSpec:
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
    transfer_from: str | None = Field(
        default=None,
        min_length=1,
        description="Another model name in this store: while no version of model_name serves, its first training "
        "fine-tunes that model's serving version on the new segment's rows and trains one from scratch on the same "
        "rows, keeping the better validation AUC; the version's lineage names the source.",
    )
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

    def transfer_source(self) -> TransferSource | None:
        """The serving version of the model ``transfer_from`` names, verified; None when it is unset."""
        if self.transfer_from is None:
            return None
        source = ModelStore(self.store_url, self.transfer_from, self.storage.options_for(self.store_url))
        return load_source(source, self.model_name)


class EnergyResource(ConfigurableResource):
    """Country (ISO 3166 alpha-3) whose grid carbon intensity codecarbon applies; there is no network lookup."""

    country_iso_code: str | None = Field(
        default=_ENERGY.country_iso_code,
        min_length=3,
        max_length=3,
        description="Where the machine runs, e.g. FRA or USA. Default: codecarbon's world average grid intensity, "
        "with a warning (energy_method says so).",
    )
    region: str | None = Field(default=_ENERGY.region)
    enabled: bool = Field(default=_ENERGY.enabled)
    cpu_tdp_w: float | None = Field(
        default=_ENERGY.cpu_tdp_w,
        gt=0,
        description="The CPU's power at full load (TDP, all sockets) when codecarbon does not know this CPU model; "
        "each busy thread is charged this / logical CPUs. Default: codecarbon's figure (see energy_method).",
    )

    def to_settings(self) -> EnergySettings:
        return EnergySettings(
            country_iso_code=self.country_iso_code.upper() if self.country_iso_code else None,
            region=self.region,
            enabled=self.enabled,
            cpu_tdp_w=self.cpu_tdp_w,
        )


class RetrainPolicy(ConfigurableResource):
    """When to retrain, which strategy to try first, when to escalate, and what may be deployed.

    Builds five core dataclasses, one method each: ``thresholds()``, ``strategy_rules()``, ``training_settings()``,
    ``tuning_settings()`` and ``drift_settings()``; ``compression_auc_tolerance`` and ``num_threads`` also reach
    ``CompressionSettings``.
    """

    drift_share_threshold: float = Field(
        default=_THRESHOLDS.drift_share,
        gt=0.0,
        le=1.0,
        description="Drifted share, weighted by the serving model's feature importance, that triggers a retrain when "
        "the batch has no labels (with labels the champion's measured AUC decides; see severe_drift_share).",
    )
    quality_drop_threshold_auc: float = Field(
        default=_THRESHOLDS.quality_drop_auc,
        gt=0.0,
        le=1.0,
        description="Drop of the serving model's AUC on a labelled batch (vs at deployment) that triggers a retrain "
        "once the upper bound of the batch AUC's interval is past it, and marks a concept drift: refit is skipped and "
        "no old reference rows are mixed in.",
    )
    decision_confidence: float = Field(
        default=_THRESHOLDS.decision_confidence,
        gt=0.5,
        lt=1.0,
        description="Confidence of the intervals every decision rests on: the champion's AUC on a batch (quality-drop "
        "trigger) and the challenger's AUC and its paired difference from the champion's (floor and promotion).",
    )
    min_rows_for_decision: int = Field(
        default=_THRESHOLDS.min_rows_for_decision,
        ge=1,
        description="Labelled rows a decision needs: a smaller batch is pooled with the next ones until they add up.",
    )
    promotion_tolerance_auc: float = Field(
        default=0.005,
        ge=0.0,
        le=0.2,
        description="How much AUC a challenger may lose to the champion and still be promoted.",
    )
    compression_auc_tolerance: float = Field(
        default=_COMPRESSION.auc_budget,
        ge=0.0,
        le=0.2,
        description="AUC the compressed model may lose against the uncompressed one.",
    )
    always_retrain: bool = Field(
        default=_THRESHOLDS.always_retrain, description="Baseline of today's practice: full retrain on every batch."
    )
    severe_drift_share: float = Field(
        default=_RULES.severe_drift_share,
        gt=0.0,
        le=1.0,
        description="Weighted drifted share from which drift is severe: refit is skipped, and on a labelled batch "
        "drift alone opens the gate only from here.",
    )
    drift_patience: int = Field(
        default=_RULES.drift_patience,
        ge=1,
        description="Consecutive drifted batches before drift alone retrains; doubles after each retrain on drift "
        "that was not promoted, until one is (a clear quality drop needs one batch, doubling the same way).",
    )
    cooldown_batches: int = Field(
        default=_RULES.cooldown_batches,
        ge=0,
        description="Batches after a retrain during which drift alone does not retrain (a quality drop still does).",
    )
    max_model_growth: float = Field(
        default=_RULES.max_model_growth,
        ge=1.0,
        description="Trees a warm-start chain may grow to, as a factor of its first version's (the last trained "
        "from scratch): a warm start is capped there, and a chain at it is retrained compactly from scratch.",
    )
    severe_column_drift: float = Field(
        default=_RULES.severe_column_drift,
        gt=0.0,
        description="A drifted column this many times past its test threshold skips refit: start at warm start.",
    )
    min_rows_new_trees: int = Field(
        default=_RULES.min_rows_new_trees,
        ge=0,
        description="Fewer labelled rows than this: only refit is tried (no new trees).",
    )
    reference_fraction: float = Field(
        default=_RULES.reference_fraction,
        ge=0.0,
        le=10.0,
        description="Rows of the champion's reference data mixed into warm start and full retrain, "
        "as a fraction of the new training rows.",
    )
    min_gain_auc: float = Field(
        default=_RULES.min_gain_auc,
        ge=0.0,
        le=1.0,
        description="Validation AUC a candidate must gain over the champion for escalation to stop.",
    )
    refit_decay_rate: float = Field(
        default=_TRAINING.refit_decay_rate, ge=0.0, lt=1.0, description="Weight of the old leaf values when refitting."
    )
    learning_rate: float = Field(default=_TRAINING.learning_rate, gt=0.0, le=1.0)
    num_leaves: int = Field(default=_TRAINING.num_leaves, ge=2, le=1024)
    feature_fraction: float = Field(
        default=_TRAINING.feature_fraction, gt=0.0, le=1.0, description="Share of the features each tree may use."
    )
    max_trees_full: int = Field(default=_TRAINING.max_trees_full, ge=1)
    max_new_trees_warm_start: int = Field(default=_TRAINING.max_new_trees_warm_start, ge=1)
    early_stopping_rounds: int = Field(
        default=_TRAINING.early_stopping_rounds,
        ge=1,
        description="Patience of a full retrain: rounds without a better validation AUC before it stops.",
    )
    early_stopping_rounds_warm_start: int = Field(
        default=_TRAINING.early_stopping_rounds_warm_start,
        ge=1,
        description="Patience of a warm start, which only learns the residual error.",
    )
    tuning_max_trials: int = Field(
        default=_TUNING.max_trials,
        ge=0,
        description="Trials of a tuning study (the default parameters and the champion's best among them), each a "
        "measured full retrain pruned on its validation curve; 0 turns tuning off. Tuned: the first model, a full "
        "retrain reached by escalation, and a re-tune (retune_every_trainings).",
    )
    tuning_budget_kwh: float = Field(
        default=_TUNING.budget_kwh,
        gt=0.0,
        description="A study stops when its energy plus its dearest trial so far would pass this.",
    )
    retune_every_trainings: int = Field(
        default=_TUNING.retune_every_trainings,
        ge=0,
        description="Once the champion's parameters have served this many trainings, the next retrain is a tuned "
        "full retrain; 0: never (escalation and the first model still tune).",
    )
    tuning_num_leaves_min: int = Field(default=_TUNING.num_leaves_min, ge=2)
    tuning_num_leaves_max: int = Field(default=_TUNING.num_leaves_max, ge=2)
    tuning_learning_rate_min: float = Field(default=_TUNING.learning_rate_min, gt=0.0, le=1.0)
    tuning_learning_rate_max: float = Field(default=_TUNING.learning_rate_max, gt=0.0, le=1.0)
    tuning_min_data_in_leaf_min: int = Field(default=_TUNING.min_data_in_leaf_min, ge=1)
    tuning_min_data_in_leaf_max: int = Field(default=_TUNING.min_data_in_leaf_max, ge=1)
    tuning_feature_fraction_min: float = Field(default=_TUNING.feature_fraction_min, gt=0.0, le=1.0)
    tuning_feature_fraction_max: float = Field(default=_TUNING.feature_fraction_max, gt=0.0, le=1.0)
    tuning_warm_width: float = Field(
        default=_TUNING.warm_width,
        gt=0.0,
        le=1.0,
        description="Share of each range a study warm-started from the champion's searches, centred on its best.",
    )
    tuning_startup_trials: int = Field(
        default=_TUNING.startup_trials, ge=0, description="Trials sampled at random before TPE models the results."
    )
    tuning_pruning_warmup_rounds: int = Field(
        default=_TUNING.pruning_warmup_rounds, ge=0, description="Boosting rounds before a trial may be pruned."
    )
    tuning_seed: int = Field(default=_TUNING.seed, description="Seed of the tuning sampler.")
    num_threads: int = Field(
        default=_TRAINING.num_threads,
        ge=1,
        description="LightGBM threads of training, of compression (timed predictions, smaller retrain, distilled "
        "student) and of scoring.",
    )
    drift_sample_rows: int = Field(
        default=_DRIFT.sample_rows,
        ge=0,
        description="Rows of the batch and of the reference the drift tests see: larger sides are sampled "
        "(seeded, without replacement) with an error bound in the report. 0 tests every row.",
    )
    drift_sample_seed: int = Field(
        default=_DRIFT.seed, description="Seed of the drift sampling, so a run can be repeated."
    )
    drift_confidence: float = Field(
        default=_DRIFT.confidence,
        ge=0.5,
        lt=1.0,
        description="Confidence of the sampling error bounds of the drift report.",
    )
    drift_report_columns: int = Field(
        default=_DRIFT.report_columns,
        ge=1,
        description="Columns the HTML drift report details (drifted and near-threshold first, then by score); "
        "every column is tested, and its plots cost about 40 ms each.",
    )
    drift_report_html: Literal["when_needed", "always", "never"] = Field(
        default=_DRIFT.report_html.value,
        description="When the drift step renders its HTML report, most of its cost: when_needed only for a retrain "
        "or an uncertain decision; any batch's on demand (green-pipeline report, drift_report_html_job).",
    )

    def thresholds(self) -> MonitoringThresholds:
        return MonitoringThresholds(
            drift_share=self.drift_share_threshold,
            quality_drop_auc=self.quality_drop_threshold_auc,
            always_retrain=self.always_retrain,
            rules=self.strategy_rules(),
            decision_confidence=self.decision_confidence,
            min_rows_for_decision=self.min_rows_for_decision,
        )

    def strategy_rules(self) -> StrategyRules:
        return StrategyRules(
            severe_drift_share=self.severe_drift_share,
            severe_column_drift=self.severe_column_drift,
            min_rows_new_trees=self.min_rows_new_trees,
            reference_fraction=self.reference_fraction,
            min_gain_auc=self.min_gain_auc,
            drift_patience=self.drift_patience,
            cooldown_batches=self.cooldown_batches,
            max_model_growth=self.max_model_growth,
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
            num_threads=self.num_threads,
            feature_fraction=self.feature_fraction,
        )

    def tuning_settings(self) -> TuningSettings:
        return TuningSettings(
            max_trials=self.tuning_max_trials,
            budget_kwh=self.tuning_budget_kwh,
            retune_every_trainings=self.retune_every_trainings,
            num_leaves_min=self.tuning_num_leaves_min,
            num_leaves_max=self.tuning_num_leaves_max,
            learning_rate_min=self.tuning_learning_rate_min,
            learning_rate_max=self.tuning_learning_rate_max,
            min_data_in_leaf_min=self.tuning_min_data_in_leaf_min,
            min_data_in_leaf_max=self.tuning_min_data_in_leaf_max,
            feature_fraction_min=self.tuning_feature_fraction_min,
            feature_fraction_max=self.tuning_feature_fraction_max,
            warm_width=self.tuning_warm_width,
            startup_trials=self.tuning_startup_trials,
            pruning_warmup_rounds=self.tuning_pruning_warmup_rounds,
            seed=self.tuning_seed,
        )

    def drift_settings(self) -> DriftSettings:
        return DriftSettings(
            sample_rows=self.drift_sample_rows,
            seed=self.drift_sample_seed,
            confidence=self.drift_confidence,
            report_columns=self.drift_report_columns,
            report_html=HtmlReport(self.drift_report_html),
        )


class CarbonAwareScheduling(ConfigurableResource):
    """Carbon-aware deferral of non-urgent retrains by the drift sensor: intensity source, zone, deadline, urgency.

    Off by default: the packaged profile is an EXAMPLE, not real grid data. For real figures use
    ``provider="http"`` with an Electricity Maps style ``api_url`` and ``api_token=EnvVar("...")``.
    """

    enabled: bool = Field(default=False, description="Defer non-urgent retrains to the cleanest window.")
    provider: str = Field(default="csv", pattern="^(csv|http)$", description="csv (offline profile) or http.")
    zone: str = Field(default=_DEFERRAL.zone, min_length=1, description="Grid zone, e.g. FR for the HTTP API.")
    profile_path: str | None = Field(
        default=None, description="CSV zone,hour,g_co2_per_kwh; default: the packaged EXAMPLE profile."
    )
    api_url: str | None = Field(default=None, description="e.g. https://api.electricitymap.org/v3")
    api_token: str | None = Field(default=None, description="Sent as the auth-token header; pass an EnvVar.")
    timeout_s: float = Field(default=TIMEOUT_S, gt=0.0, le=120.0)
    deadline_hours: float = Field(
        default=_DEFERRAL.deadline / HOUR,
        gt=0.0,
        le=168.0,
        description="A deferred retrain starts by this long after its drift report.",
    )
    expected_duration_hours: float = Field(
        default=_DEFERRAL.expected_duration / HOUR,
        gt=0.0,
        le=24.0,
        description="How long a retraining run lasts: the window to keep clean.",
    )
    urgent_drift_share: float = Field(
        default=_DEFERRAL.urgent_drift_share,
        gt=0.0,
        le=1.0,
        description="From this drifted share a retrain never waits (keep it above policy.drift_share_threshold).",
    )
    urgent_auc_drop: float = Field(
        default=_DEFERRAL.urgent_auc_drop,
        gt=0.0,
        le=1.0,
        description="From this drop of the serving model's AUC a retrain never waits.",
    )

    def intensity_provider(self) -> IntensityProvider:
        if self.provider == "csv":
            return CsvIntensityProvider(self.profile_path)
        if not self.api_url:
            raise CarbonIntensityError("carbon_aware.api_url is required when carbon_aware.provider is 'http'.")
        return HttpIntensityProvider(self.api_url, self.api_token, self.timeout_s)

    def to_settings(self) -> DeferralSettings:
        return DeferralSettings(
            zone=self.zone,
            deadline=self.deadline_hours * HOUR,
            expected_duration=self.expected_duration_hours * HOUR,
            urgent_drift_share=self.urgent_drift_share,
            urgent_auc_drop=self.urgent_auc_drop,
        )


class DaskResource(ConfigurableResource):
    """The Dask cluster on which the steps process a batch past ``dataset.max_local_bytes``: a scheduler's address,
    or a local cluster of worker processes started on first use in a run and closed when the run's steps end."""

    scheduler_address: str | None = Field(
        default=_CLUSTER.scheduler_address,
        description="e.g. tcp://dask-scheduler:8786. Unset: a local cluster of n_workers processes on this machine.",
    )
    n_workers: int = Field(default=_CLUSTER.n_workers, ge=1, description="Workers of the local cluster.")
    threads_per_worker: int = Field(default=_CLUSTER.threads_per_worker, ge=1)
    memory_limit: str = Field(
        default=_CLUSTER.memory_limit,
        description="Memory per worker of the local cluster (Dask's format, e.g. 4GiB): past it Dask spills to "
        "disk, pauses, then restarts the worker.",
    )

    _cluster: Cluster | None = PrivateAttr(default=None)

    def to_settings(self) -> ClusterSettings:
        return ClusterSettings(
            scheduler_address=self.scheduler_address,
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            memory_limit=self.memory_limit,
        )

    def client(self) -> Client:
        """The run's client, connecting (or starting the local cluster) on first use: a run of small batches never
        starts one."""
        if self._cluster is None:
            self._cluster = connect(self.to_settings())
        return self._cluster.client

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


class ArtifactStorage(ConfigurableResource):
    """Where step outputs and reports of runs are kept (local path or s3:// URL)."""

    base_url: str = f"{DEFAULT_ROOT}/artifacts"
    storage: ResourceDependency[ObjectStorage]

    def url(self, *parts: str) -> str:
        """``base_url`` joined with ``parts``, each one plain name: a partition key inside one cannot leave it."""
        return files.join(self.base_url, *map(files.validate_batch_key, parts))

    def options(self, url: str) -> dict[str, Any]:
        """The storage options of ``url`` (an artefact's), for code that reads or writes it itself."""
        return self.storage.options_for(url)

    def write(self, url: str, payload: bytes) -> None:
        files.write_bytes_atomic(url, payload, self.storage.options_for(url))

    def exists(self, url: str) -> bool:
        return files.exists(url, self.storage.options_for(url))

    def read(self, url: str) -> bytes | None:
        return files.read_bytes(url, self.storage.options_for(url)) if self.exists(url) else None


class CheckThresholds(ConfigurableResource):
    """Limits the asset checks enforce: a quality floor that blocks deployment, and energy budgets.

    A budget whose severity is ``block`` also skips retraining while it is exhausted (see green_pipeline.energy.budget).
    """

    quality_floor_auc: float = Field(
        default=0.65, ge=0.0, le=1.0, description="A compressed model below this test AUC is never deployed."
    )
    energy_budget_per_run_kwh: float = Field(
        default=_BUDGETS.per_run.limit_kwh,
        gt=0.0,
        description="A run that spends more than this is flagged by the ledger's check.",
    )
    energy_budget_per_run_severity: Literal["warn", "block"] = Field(
        default=_BUDGETS.per_run.severity.value,
        description="warn: flag runs over budget; block: also skip a retraining that the run's spend so far plus "
        "the last measured retraining would push over budget.",
    )
    energy_budget_per_month_kwh: float = Field(
        default=_BUDGETS.per_month.limit_kwh,
        gt=0.0,
        description="Measured energy of all steps in a UTC calendar month beyond which drift_report's check fails "
        "(default: 30 daily runs at the per-run budget).",
    )
    energy_budget_per_month_severity: Literal["warn", "block"] = Field(
        default=_BUDGETS.per_month.severity.value,
        description="warn: the check fails as a warning; block: retraining is skipped until the month ends "
        "(monitoring and scoring go on).",
    )

    def to_settings(self) -> BudgetSettings:
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
    experiment_name: str = Field(default=MlflowSettings.experiment_name, min_length=1)

    def to_settings(self) -> MlflowSettings | None:
        """The settings when tracking is on, after checking MLflow is installed (before any training starts)."""
        if not self.tracking_uri:
            return None
        require_mlflow("mlflow_tracking.tracking_uri")
        return MlflowSettings(self.tracking_uri, self.experiment_name)
