"""Monitoring group: the drift report of a batch against the serving model, and the retrain decision."""

import dataclasses

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.drift.assessment import assess_batch, reference_key
from green_pipeline.drift.detection import DriftResult
from green_pipeline.orchestration.metadata import DRIFT_REPORT, VALIDATED_BATCH, DriftDecision
from green_pipeline.orchestration.resources import ArtifactStorage, ModelStoreResource, RetrainPolicy
from green_pipeline.records import DriftAssessment
from green_pipeline.store import files

TOP_DRIFTED_COLUMNS = 5


@metered_asset(
    key=DRIFT_REPORT,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH)},
    partitions_def=batch_partitions,
    group_name="monitoring",
    io_manager_key="artifact_io_manager",
)
def drift_report(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    artifacts: ArtifactStorage,
) -> Output[DriftAssessment]:
    """Evidently data drift of the batch vs the data the serving model was trained on, and the decision."""
    store = model_store.store()
    # This run's champion from here on: every later step loads the version recorded in this report.
    serving = store.current_version()
    champion = model_store.champion(serving) if serving else None
    key = reference_key(store, champion) if champion else None
    assessment, html = assess_batch(
        context.partition_key, validated_batch, champion, policy.thresholds(), policy.drift_settings(), key
    )
    if html is not None:
        report_url = artifacts.url("reports", "drift_report", f"{files.validate_batch_key(context.partition_key)}.html")
        artifacts.write(report_url, html.encode())
        assessment = dataclasses.replace(assessment, report_url=report_url)
    return Output(assessment, metadata=drift_metadata(assessment))


def drift_metadata(assessment: DriftAssessment) -> dict[str, object]:
    """The decision as the contract writes it (``DriftDecision``), and what the UI shows beside it."""
    drift = assessment.drift
    metadata: dict[str, object] = DriftDecision.of(assessment).as_metadata()
    if assessment.report_url:
        metadata["report_path"] = MetadataValue.path(assessment.report_url)
    if drift.sample is not None:
        metadata |= sampling_metadata(drift)
    if drift.columns:
        rows = "\n".join(
            f"| {c.column} | {c.method} | {c.score:.4g} | {_bound(c.error_bound)} | {c.threshold:.3g} "
            f"| {'yes' if c.drifted else 'no'} |"
            for c in drift.top_columns(TOP_DRIFTED_COLUMNS)
        )
        metadata["top_drifted_columns"] = MetadataValue.md(
            "| column | test | score | ± bound | threshold | drifted |\n|---|---|---|---|---|---|\n" + rows
        )
    return metadata


def sampling_metadata(drift: DriftResult) -> dict[str, object]:
    """How many rows the tests saw, the seed, and what the sampling error means for this decision."""
    sample = drift.sample
    assert sample is not None, "only compared results carry sampling figures"
    bounds = [c.error_bound for c in drift.columns if c.error_bound is not None]
    return {
        "drift_sampled": sample.sampled,
        "drift_rows_tested_current": sample.current_rows,
        "drift_rows_tested_reference": sample.reference_rows,
        "drift_sample_seed": sample.seed,
        "drift_confidence": sample.confidence,
        "drift_score_error_bound": max(bounds, default=0.0),
        "drift_cdf_error_bound": sample.cdf_error_bound,
        "drift_columns_near_threshold": len(drift.near_threshold_columns),
        "drift_decision_certain": drift.decision_certain,
        "drift_reference_profile": "cached" if sample.reference_cached else "computed",
        "drift_report_columns": len(sample.report_columns),
    }


def _bound(bound: float | None) -> str:
    return "n/a (p-value)" if bound is None else f"{bound:.2g}"
