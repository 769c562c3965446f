"""Training group: the retrained model (only when the policy says so) and its evaluation vs the champion."""

from collections.abc import Iterator

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.evaluation import auc
from green_pipeline.records import CandidateModel, ChampionComparison, DriftAssessment
from green_pipeline.resources import DatasetResource, EnergyResource, ModelStoreResource, RetrainPolicy
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
) -> Iterator[Output[CandidateModel]]:
    """A challenger, only when drift or a quality drop passed its threshold or nothing is deployed.

    The cheapest strategy expected to recover quality is tried first, escalating while the quality bar is
    missed; otherwise nothing is materialized and Dagster shows this step, and everything after it, skipped.
    """
    if not drift_report.decision.retrain:
        context.log.info(f"Retraining skipped: {drift_report.decision.reason}")
        return
    champion = model_store.store().load(drift_report.champion_version) if drift_report.champion_version else None
    # The first model's schema is the one validation inferred: the validated batch holds exactly its columns.
    schema = champion.schema if champion else infer_schema(validated_batch, dataset.spec(), context.partition_key)
    split = split_batch(validated_batch, schema.label, context.partition_key, context.partition_key)
    rules = policy.strategy_rules()
    plan = plan_for(drift_report, len(validated_batch), policy.quality_drop_threshold_auc, policy.always_retrain, rules)
    # Each attempt is measured on its own, with the settings that meter the whole step.
    outcome = retrain(split, schema, champion, plan, rules, policy.training_settings(), energy.settings())
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
        },
    )


@metered_asset(partitions_def=batch_partitions, group_name="training", io_manager_key="artifact_io_manager")
def model_evaluation(
    validated_batch: pd.DataFrame, retrained_model: CandidateModel, model_store: ModelStoreResource
) -> Output[ChampionComparison]:
    """Challenger and champion AUC on the same held-out rows of the new batch."""
    schema = retrained_model.schema
    split = split_batch(validated_batch, schema.label, retrained_model.batch, retrained_model.batch)
    champion = model_store.store().load(retrained_model.parent_version) if retrained_model.parent_version else None
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
