"""Monitoring group: the drift report of a batch against the serving model, and the retrain decision."""

import dataclasses

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.monitoring import assess_batch
from green_pipeline.records import DriftAssessment
from green_pipeline.resources import ArtifactStorage, ModelStoreResource, RetrainPolicy

TOP_DRIFTED_COLUMNS = 5


@metered_asset(partitions_def=batch_partitions, group_name="monitoring", io_manager_key="artifact_io_manager")
def drift_report(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    artifacts: ArtifactStorage,
) -> Output[DriftAssessment]:
    """Evidently data drift of the batch vs the data the serving model was trained on, and the decision."""
    champion = model_store.store().load_current()
    assessment, html = assess_batch(context.partition_key, validated_batch, champion, policy.thresholds())
    if html is not None:
        report_url = artifacts.url("reports", "drift_report", f"{context.partition_key}.html")
        artifacts.write(report_url, html.encode())
        assessment = dataclasses.replace(assessment, report_url=report_url)
    return Output(assessment, metadata=drift_metadata(assessment))


def drift_metadata(assessment: DriftAssessment) -> dict[str, object]:
    drift = assessment.drift
    metadata: dict[str, object] = {
        "drift_threshold": drift.threshold,
        "drifted_columns": drift.drifted_count,
        "columns_tested": drift.column_count,
        "reference_rows": drift.reference_rows,
        "current_rows": drift.current_rows,
        "retrain_required": assessment.decision.retrain,
        "decision": assessment.decision.reason,
        "champion_version": assessment.champion_version or "none",
    }
    if drift.drifted_share is not None:
        metadata["drifted_share"] = drift.drifted_share
    if assessment.champion_auc is not None and assessment.champion_deployed_auc is not None:
        metadata["champion_auc"] = assessment.champion_auc
        metadata["champion_auc_drop"] = assessment.champion_deployed_auc - assessment.champion_auc
    if assessment.report_url:
        metadata["report_path"] = MetadataValue.path(assessment.report_url)
    if drift.columns:
        rows = "\n".join(
            f"| {c.column} | {c.method} | {c.score:.4g} | {c.threshold:.3g} | {'yes' if c.drifted else 'no'} |"
            for c in drift.top_columns(TOP_DRIFTED_COLUMNS)
        )
        metadata["top_drifted_columns"] = MetadataValue.md(
            "| column | test | score | threshold | drifted |\n|---|---|---|---|---|\n" + rows
        )
    return metadata
