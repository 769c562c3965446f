"""Deployment group, second half: publish the compressed model to the store, promote it if it is not worse."""

import pandas as pd
from dagster import AssetExecutionContext, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.ledger import run_entries
from green_pipeline.policy import decide_promotion
from green_pipeline.records import ChampionComparison, CompressedModel, Deployment
from green_pipeline.release import engine_files, release_metadata
from green_pipeline.resources import DatasetResource, ModelStoreResource, RetrainPolicy

ENERGY_ATTRIBUTED_ASSETS = ("retrained_model", "compressed_model")


@metered_asset(partitions_def=batch_partitions, group_name="deployment", io_manager_key="artifact_io_manager")
def deployed_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    compressed_model: CompressedModel,
    model_evaluation: ChampionComparison,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    dataset: DatasetResource,
) -> Output[Deployment]:
    """A new version in the store; ``current`` moves to it only if it is not worse than the champion."""
    store = model_store.store()
    decision = decide_promotion(
        model_evaluation.champion_auc, compressed_model.test_auc, policy.promotion_tolerance_auc
    )
    candidate = compressed_model.model
    energy = {
        f"{entry.asset}_energy_kwh": entry.energy_kwh
        for entry in run_entries(context.instance, context.run.run_id)
        if entry.asset in ENERGY_ATTRIBUTED_ASSETS and entry.partition == context.partition_key
    }
    metadata = release_metadata(
        compressed_model, model_evaluation, decision, energy, dataset.data_url, context.run.run_id
    )
    version = store.publish(
        candidate.model_text, candidate.schema, validated_batch, metadata, engine_files(compressed_model)
    )
    if decision.promote:
        store.promote(version)
    deployment = Deployment(
        version=version,
        promoted=decision.promote,
        reason=decision.reason,
        serving_version=store.current_version(),
    )
    context.log.info(f"{version}: {decision.reason}")
    return Output(
        deployment,
        metadata={
            "version": version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "serving_version": deployment.serving_version or "none",
            "test_auc": compressed_model.test_auc,
        },
    )
