"""Training group: the retrained model (only when the policy says so) and its evaluation vs the champion."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.carbon_deferral import deferral_metadata, measured_total
from green_pipeline.evaluation import auc
from green_pipeline.ledger import retraining_budget_block
from green_pipeline.mlflow_logging import log_run, training_record
from green_pipeline.records import CandidateModel, ChampionComparison, DriftAssessment
from green_pipeline.resources import (
    CarbonAwareScheduling,
    CheckThresholds,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.retraining import plan_for, retrain
from green_pipeline.schema import infer_schema
from green_pipeline.training import split_batch


@metered_asset(
    partitions_def=batch_partitions,
    group_name="training",
    io_manager_key="artifact_io_manager",
    output_required=False,
    # One training at a time across runs (dagster.yaml: pools default_limit 1).
    pool="training",
)
def retrained_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    drift_report: DriftAssessment,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    dataset: DatasetResource,
    energy: EnergyResource,
    carbon_aware: CarbonAwareScheduling,
    check_thresholds: CheckThresholds,
    mlflow_tracking: MlflowTracking,
) -> Iterator[Output[CandidateModel]]:
    """A challenger, only when drift or a quality drop passed its threshold or nothing is deployed.

    The cheapest strategy expected to recover quality is tried first, escalating while the quality bar is
    missed; otherwise nothing is materialized and Dagster shows this step, and everything after it, skipped.
    A blocking energy budget that is exhausted skips it the same way (check_thresholds, green_pipeline.budget).
    """
    if not drift_report.decision.retrain:
        context.log.info(f"Retraining skipped: {drift_report.decision.reason}")
        return
    budgets = check_thresholds.budgets()
    blocked = retraining_budget_block(context.instance, context.run.run_id, budgets, datetime.now(UTC))
    if blocked:
        context.log.warning(f"Retraining skipped, a blocking energy budget is exhausted: {blocked}")
        return
    tracking = mlflow_tracking.settings()  # raises before any training if MLflow is configured but not installed
    started = datetime.now(UTC)  # the intensity the run actually met, for runs the drift sensor timed
    champion = model_store.champion(drift_report.champion_version) if drift_report.champion_version else None
    # The first model's schema is the one validation inferred: the validated batch holds exactly its columns.
    schema = champion.schema if champion else infer_schema(validated_batch, dataset.spec(), context.partition_key)
    split = split_batch(validated_batch, schema.label, context.partition_key, context.partition_key)
    rules = policy.strategy_rules()
    plan = plan_for(drift_report, len(validated_batch), policy.quality_drop_threshold_auc, policy.always_retrain, rules)
    # Each attempt is measured on its own, with the settings that meter the whole step.
    settings = policy.training_settings()
    outcome = retrain(split, schema, champion, plan, rules, settings, energy.settings())
    result = outcome.result
    context.log.info(f"{result.strategy.value}: {outcome.reason}")
    candidate = CandidateModel(
        batch=context.partition_key,
        model_text=result.booster.model_to_string(),
        schema=schema,
        strategy=result.strategy,
        parent_version=champion.version if champion else None,
        trees=result.trees,
        new_trees=result.new_trees,
        train_rows=result.train_rows,
    )
    tracked = {}
    if tracking is not None:
        tracked = log_run(tracking, training_record(outcome, candidate, settings, context.run.run_id)).as_metadata()
    yield Output(
        candidate,
        metadata={
            **outcome.metadata(),
            "attempts_table": MetadataValue.md(outcome.attempts_table()),
            "trees": result.trees,
            "new_trees": result.new_trees,
            "train_rows": result.train_rows,
            "valid_auc": result.valid_auc,
            "parent_version": candidate.parent_version or "none",
            **tracked,
            **deferral_metadata(
                context.run.tags,
                carbon_aware.intensity_provider,
                started,
                measured_total(attempt.energy.energy_kwh for attempt in outcome.attempts),
            ),
        },
    )


@metered_asset(partitions_def=batch_partitions, group_name="training", io_manager_key="artifact_io_manager")
def model_evaluation(
    validated_batch: pd.DataFrame, retrained_model: CandidateModel, model_store: ModelStoreResource
) -> Output[ChampionComparison]:
    """Challenger and champion AUC on the same held-out rows of the new batch."""
    schema = retrained_model.schema
    split = split_batch(validated_batch, schema.label, retrained_model.batch, retrained_model.batch)
    champion = model_store.champion(retrained_model.parent_version) if retrained_model.parent_version else None
    comparison = ChampionComparison(
        challenger_auc=auc(retrained_model.booster(), split.test, schema),
        champion_auc=auc(champion.booster, split.test, champion.schema) if champion else None,
        champion_version=champion.version if champion else None,
        test_rows=len(split.test),
    )
    metadata: dict[str, object] = {
        "challenger_auc": comparison.challenger_auc,
        "test_rows": comparison.test_rows,
    }
    if comparison.champion_auc is not None:
        metadata |= {
            "champion_auc": comparison.champion_auc,
            "auc_gain": comparison.challenger_auc - comparison.champion_auc,
        }
    return Output(comparison, metadata=metadata)
