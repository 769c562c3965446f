"""Deployment group, second half: publish the compressed model to the store, promote it if it passes the gate."""

import pandas as pd
from dagster import AssetExecutionContext, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.ledger import run_entries
from green_pipeline.mlflow_logging import log_run, release_record
from green_pipeline.policy import decide_promotion
from green_pipeline.records import ChampionComparison, CompressedModel, Deployment
from green_pipeline.release import energy_kpis, release_metadata
from green_pipeline.resources import (
    CheckThresholds,
    DatasetResource,
    MlflowTracking,
    ModelStoreResource,
    RetrainPolicy,
)

#: The steps whose energy produced a version: its quality_per_kwh divides the AUC gain by their sum.
ENERGY_ATTRIBUTED_ASSETS = ("retrained_model", "compressed_model")


@metered_asset(partitions_def=batch_partitions, group_name="deployment", io_manager_key="artifact_io_manager")
def deployed_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    compressed_model: CompressedModel,
    model_evaluation: ChampionComparison,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    check_thresholds: CheckThresholds,
    dataset: DatasetResource,
    mlflow_tracking: MlflowTracking,
) -> Output[Deployment]:
    """A new version in the store, with its energy KPIs; ``current`` moves to it only if it reaches the quality floor
    and is not worse than the champion. A rejected version stays published and the run succeeds."""
    tracking = mlflow_tracking.settings()
    store = model_store.store()
    decision = decide_promotion(
        model_evaluation.champion_auc,
        compressed_model.test_auc,
        policy.promotion_tolerance_auc,
        check_thresholds.quality_floor_auc,
    )
    candidate = compressed_model.model
    energy = {
        f"{entry.asset}_energy_kwh": entry.energy_kwh
        for entry in run_entries(context.instance, context.run.run_id)
        if entry.asset in ENERGY_ATTRIBUTED_ASSETS and entry.partition == context.partition_key
    }
    kpis = energy_kpis(compressed_model, model_evaluation, energy, ENERGY_ATTRIBUTED_ASSETS)
    metadata = release_metadata(
        compressed_model, model_evaluation, decision, energy, kpis, dataset.data_url, context.run.run_id
    )
    version = store.publish(candidate.model_text, candidate.schema, validated_batch, metadata)
    if decision.promote:
        # Judged against this champion: if another run promoted meanwhile, StoreConflictError, nothing overwritten.
        store.promote(version, replacing=model_evaluation.champion_version)
    deployment = Deployment(
        version=version,
        promoted=decision.promote,
        reason=decision.reason,
        serving_version=store.current_version(),
    )
    context.log.info(f"{version}: {decision.reason}")
    tracked = {}
    if tracking is not None:
        record = release_record(compressed_model, model_evaluation, deployment, kpis, context.run.run_id)
        tracked = log_run(tracking, record).as_metadata()
    return Output(
        deployment,
        metadata={
            "version": version,
            "promoted": decision.promote,
            "decision": decision.outcome,
            "reason": decision.reason,
            "serving_version": deployment.serving_version or "none",
            "test_auc": compressed_model.test_auc,
            **kpis.as_metadata(),
            **tracked,
        },
    )
