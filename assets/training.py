"""Training group: the retrained model (only when the policy says so) and its evaluation vs the champion."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.assets.scoring import prediction_cache
from green_pipeline.carbon.deferral import deferral_metadata
from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.data.schema import DatasetSpec
from green_pipeline.orchestration.cluster_batches import retrain_on_cluster
from green_pipeline.orchestration.history import load_batches
from green_pipeline.orchestration.learning import learning_split
from green_pipeline.orchestration.ledger import retraining_budget_block
from green_pipeline.orchestration.metadata import (
    COMPRESSED_MODEL,
    DRIFT_REPORT,
    MODEL_EVALUATION,
    RETRAINED_MODEL,
    VALIDATED_BATCH,
    EvaluationRecord,
    TrainingRecord,
)
from green_pipeline.orchestration.pods import HEAVY_STEP_TAGS
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    CarbonAwareScheduling,
    CheckThresholds,
    DaskResource,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.records import CandidateModel, ChampionComparison, CompressedModel, DriftAssessment
from green_pipeline.reporting.mlflow_logging import tracking_metadata, training_record
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.growth import tree_budget
from green_pipeline.training.promotion import compare_with_champion
from green_pipeline.training.retraining import Retrained, retrain_batch
from green_pipeline.training.study import TuningStudy


@metered_asset(
    key=RETRAINED_MODEL,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any), "drift_report": AssetIn(DRIFT_REPORT)},
    partitions_def=batch_partitions,
    group_name="training",
    io_manager_key="artifact_io_manager",
    output_required=False,
    # One training at a time across runs (dagster.yaml: pools default_limit 1).
    pool="training",
    # Its pod on the k8s executor: the cores LightGBM trains on (docs/DISTRIBUTED.md).
    op_tags=HEAVY_STEP_TAGS,
)
def retrained_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame | DatasetBatch,
    drift_report: DriftAssessment,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    dataset: DatasetResource,
    energy: EnergyResource,
    carbon_aware: CarbonAwareScheduling,
    check_thresholds: CheckThresholds,
    mlflow_tracking: MlflowTracking,
    artifacts: ArtifactStorage,
    dask: DaskResource,
) -> Iterator[Output[CandidateModel]]:
    """A challenger, only when drift or a quality drop passed its threshold or nothing is deployed.

    The cheapest strategy expected to recover quality is tried first, escalating while the quality bar is
    missed; otherwise nothing is materialized and Dagster shows this step, and everything after it, skipped.
    The batches the drift step pooled with this one (``drift_report.pooled_batches``) are trained on too. With nothing
    deployed and ``model_store.transfer_from`` set, the model is the better of a transfer from that model and one from
    scratch (``retraining.transfer_or_scratch``).
    A blocking energy budget that is exhausted skips it the same way (check_thresholds, green_pipeline.energy.budget).
    A dataset batch trains on the cluster with ``lightgbm.dask`` (``cluster_batches.retrain_on_cluster``).
    """
    if not drift_report.decision.retrain:
        context.log.info(f"Retraining skipped: {drift_report.decision.reason}")
        return
    op = context.op_execution_context  # its run id and tags are set too when a test calls the asset directly
    blocked = retraining_budget_block(context.instance, op.run_id, check_thresholds.to_settings(), datetime.now(UTC))
    if blocked:
        context.log.warning(f"Retraining skipped, a blocking energy budget is exhausted: {blocked}")
        return
    tracking = mlflow_tracking.to_settings()  # raises before any training if MLflow is configured but not installed
    started = datetime.now(UTC)  # the intensity the run actually met, for runs the drift sensor timed
    champion = model_store.champion(drift_report.champion_version) if drift_report.champion_version else None
    spec, settings = dataset.to_settings(), policy.training_settings()
    pooled = load_batches(context.instance, artifacts, drift_report.pooled_batches)
    if isinstance(validated_batch, DatasetBatch):
        retrained, cluster = retrain_on_cluster(
            dask, energy, artifacts, validated_batch, drift_report, champion, spec, policy, pooled
        )
    else:
        retrained, cluster = (
            _retrain_in_process(
                validated_batch, drift_report, champion, pooled, model_store, policy, spec, energy, artifacts
            ),
            {},
        )
    outcome = retrained.outcome
    context.log.info(f"{outcome.result.strategy.value}: {outcome.reason}")
    yield Output(
        retrained.candidate,
        metadata={
            **TrainingRecord.of(retrained).as_metadata(),
            **outcome.metadata(),
            "attempts_table": MetadataValue.md(outcome.attempts_table()),
            **tuning_metadata(outcome.study),
            **tracking_metadata(tracking, training_record(outcome, retrained.candidate, settings, op.run_id)),
            **deferral_metadata(op.run_tags, carbon_aware.intensity_provider, started, outcome.energy_kwh),
            **cluster,
        },
    )


def _retrain_in_process(
    frame: pd.DataFrame,
    drift_report: DriftAssessment,
    champion: DeployedModel | None,
    pooled: dict[str, pd.DataFrame],
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    spec: DatasetSpec,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
) -> Retrained:
    """``retrain_batch`` with the champion's chain budget, prediction cache and transfer source."""
    rules = policy.strategy_rules()
    budget = tree_budget(model_store.store(), champion.version, rules.max_model_growth) if champion else None
    return retrain_batch(
        frame,
        drift_report,
        champion,
        spec,
        policy.thresholds(),
        policy.training_settings(),
        energy.to_settings(),
        pooled,
        budget,
        # The drift step's scores of these rows: the champion is judged and warm-started on them, not re-scored.
        prediction_cache(model_store, artifacts, champion.version) if champion else None,
        # Only a first model starts from model_store.transfer_from's serving version.
        source=None if champion else model_store.transfer_source(),
        tuning=policy.tuning_settings(),
    )


@metered_asset(
    key=MODEL_EVALUATION,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any), "compressed_model": AssetIn(COMPRESSED_MODEL)},
    partitions_def=batch_partitions,
    group_name="training",
    io_manager_key="artifact_io_manager",
)
def model_evaluation(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame | DatasetBatch,
    compressed_model: CompressedModel,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    artifacts: ArtifactStorage,
    dask: DaskResource,
    energy: EnergyResource,
) -> Output[ChampionComparison]:
    """The compressed challenger and the champion on the same held-out rows, with intervals at the policy's
    ``decision_confidence`` (paired DeLong for the difference).

    The compressed model is the one deployed_model would publish, so it is the one judged: compression may cost AUC
    within its budget, and the promotion gate and the quality_floor check must see that cost. Its test rows are the
    ones compressed_model measured ``test_auc`` on (the same seeded split of this batch and the pooled ones): every
    judged row's test share, so a pooled decision is not left to one small batch's few test rows.
    """
    candidate = compressed_model.model
    split, _ = learning_split(context.instance, artifacts, dask, energy, candidate, validated_batch)
    champion = model_store.champion(candidate.parent_version) if candidate.parent_version else None
    confidence = policy.thresholds().decision_confidence
    cache = prediction_cache(model_store, artifacts, champion.version) if champion else None
    comparison = compare_with_champion(split.test, candidate.booster(), candidate.schema, champion, confidence, cache)
    return Output(comparison, metadata=EvaluationRecord.of(comparison).as_metadata())


def tuning_metadata(study: TuningStudy | None) -> dict[str, MetadataValue]:
    """The tuned parameters (JSON) and the trials (Markdown), beside the figures ``outcome.metadata()`` holds."""
    if study is None:
        return {}
    return {
        "tuning_best_params": MetadataValue.json(study.best.params.as_json()),
        "tuning_trials_table": MetadataValue.md(study.trials_table()),
    }
