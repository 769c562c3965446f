"""Deployment group, second half: publish the compressed model to the store, promote it if it passes the gate."""

from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.orchestration.learning import learned_rows
from green_pipeline.orchestration.ledger import production_energy
from green_pipeline.orchestration.metadata import (
    COMPRESSED_MODEL,
    DEPLOYED_MODEL,
    MODEL_EVALUATION,
    PRODUCING_STEPS,
    VALIDATED_BATCH,
    DeploymentRecord,
)
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    CheckThresholds,
    DaskResource,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.records import ChampionComparison, CompressedModel, Deployment
from green_pipeline.reporting.mlflow_logging import release_record, tracking_metadata
from green_pipeline.serving.release import energy_kpis, publish_version, release_metadata
from green_pipeline.training.promotion import decide_promotion


@metered_asset(
    key=DEPLOYED_MODEL,
    ins={
        "validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any),
        "compressed_model": AssetIn(COMPRESSED_MODEL),
        "model_evaluation": AssetIn(MODEL_EVALUATION),
    },
    partitions_def=batch_partitions,
    group_name="deployment",
    io_manager_key="artifact_io_manager",
)
def deployed_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame | DatasetBatch,
    compressed_model: CompressedModel,
    model_evaluation: ChampionComparison,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    check_thresholds: CheckThresholds,
    dataset: DatasetResource,
    mlflow_tracking: MlflowTracking,
    artifacts: ArtifactStorage,
    dask: DaskResource,
    energy: EnergyResource,
) -> Output[Deployment]:
    """A new version in the store, with its energy KPIs; ``current`` moves to it only if its AUC interval reaches the
    quality floor and its paired difference from the champion is within the tolerance (training.promotion). A
    rejected version stays published and the run succeeds. The version's reference is every row it learned from
    (this batch and the pooled ones; of a dataset batch, its held-out rows and training sample): the next drift step
    compares with them, the next warm start samples them."""
    tracking = mlflow_tracking.to_settings()
    run_id = context.op_execution_context.run_id  # also set when a test invokes the asset directly
    decision = decide_promotion(model_evaluation, policy.promotion_tolerance_auc, check_thresholds.quality_floor_auc)
    spent = production_energy(context.instance, run_id, context.partition_key)
    kpis = energy_kpis(compressed_model, model_evaluation, spent, [step.to_user_string() for step in PRODUCING_STEPS])
    metadata = release_metadata(compressed_model, model_evaluation, decision, spent, kpis, dataset.data_url, run_id)
    reference = learned_rows(context.instance, artifacts, dask, energy, compressed_model.model, validated_batch)
    deployment = publish_version(
        model_store.store(), compressed_model, reference, metadata, decision, model_evaluation.champion_version
    )
    context.log.info(f"{deployment.version}: {decision.reason}")
    record = release_record(compressed_model, model_evaluation, deployment, kpis, run_id)
    return Output(
        deployment,
        metadata={
            **DeploymentRecord.of(deployment, decision, compressed_model, kpis).as_metadata(),
            **tracking_metadata(tracking, record),
        },
    )
