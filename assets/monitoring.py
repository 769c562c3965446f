"""Monitoring group: the drift report of a batch against the serving model, the retrain decision, and the HTML
report on demand (the drift step renders it only when someone will read it: ``policy.drift_report_html``)."""

import dataclasses
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    DagsterInstance,
    MetadataValue,
    Nothing,
    Output,
)

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.assets.scoring import score_cached
from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.drift.assessment import (
    MonitoringThresholds,
    assess_batch,
    batch_report,
    judged_rows,
    reference_key,
)
from green_pipeline.drift.detection import DriftResult
from green_pipeline.errors import StoreError
from green_pipeline.orchestration.cluster_batches import drift_sample
from green_pipeline.orchestration.history import gate_history_of, latest_metadata, load_batches
from green_pipeline.orchestration.metadata import DRIFT_REPORT, DRIFT_REPORT_HTML, VALIDATED_BATCH, DriftDecision
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    DaskResource,
    EnergyResource,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.records import DriftAssessment
from green_pipeline.serving.scoring import SCORE
from green_pipeline.store import files

TOP_DRIFTED_COLUMNS = 5


@metered_asset(
    key=DRIFT_REPORT,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any)},
    partitions_def=batch_partitions,
    group_name="monitoring",
    io_manager_key="artifact_io_manager",
)
def drift_report(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame | DatasetBatch,
    model_store: ModelStoreResource,
    policy: RetrainPolicy,
    artifacts: ArtifactStorage,
    energy: EnergyResource,
    dask: DaskResource,
) -> Output[DriftAssessment]:
    """Drift vs the data the serving model was trained on, weighted by the model's feature importance, the model's
    AUC interval on the batch, and the decision, which also rests on the earlier batches (``history``).

    The champion scores the judged rows once, through its prediction cache: the quality check reads those scores
    and ``predictions`` finds them cached. A dataset batch is judged on a uniform sample drawn part by part on the
    cluster (``policy.drift_sample_rows`` on average), its error bounds those of a sample of the whole batch.
    """
    frame, population, cluster = validated_batch, None, {}
    if isinstance(validated_batch, DatasetBatch):
        settings = policy.drift_settings()
        frame, cluster = drift_sample(dask, energy, artifacts, validated_batch, settings, context.partition_key)
        population = validated_batch.rows
    store = model_store.store()
    # This run's champion from here on: every later step loads the version recorded in this report.
    serving = store.current_version()
    champion = model_store.champion(serving) if serving else None
    key = reference_key(store, champion) if champion else None
    history = gate_history_of(context.instance, context.partition_key)
    pooled = load_batches(context.instance, artifacts, history.pooled_batches)
    judged = judged_rows(frame, pooled)
    scoring = score_cached(champion, judged, model_store, artifacts, energy, policy) if champion else None
    assessment, html = assess_batch(
        context.partition_key,
        frame,
        champion,
        policy.thresholds(),
        policy.drift_settings(),
        key,
        history,
        pooled,
        scoring.result.predictions[SCORE].to_numpy() if scoring else None,
        population,
    )
    assessment = dataclasses.replace(
        assessment,
        report_url=write_report(artifacts, context.partition_key, html) if html is not None else None,
        champion_scoring=scoring.cost if scoring else None,
    )
    engine = (
        {f"scoring_{key}": value for key, value in scoring.engine.as_metadata().items()}
        if scoring and scoring.engine
        else {}
    )
    return Output(assessment, metadata={**drift_metadata(assessment, policy.thresholds()), **engine, **cluster})


@metered_asset(
    key=DRIFT_REPORT_HTML,
    deps=[DRIFT_REPORT],
    partitions_def=batch_partitions,
    group_name="monitoring",
    dagster_type=Nothing,
)
def drift_report_html(
    context: AssetExecutionContext, model_store: ModelStoreResource, policy: RetrainPolicy, artifacts: ArtifactStorage
) -> Output[None]:
    """Evidently's HTML drift report of the batch against the model that served it (its drift report's champion,
    else the serving one), on demand: written where the drift step writes it, for a batch whose run skipped it."""
    batch = context.partition_key
    decision = latest_drift_decision(context.instance, batch)
    store = model_store.store()
    version = (decision.champion_version if decision else None) or store.current_version()
    if version is None:
        raise StoreError(f"no model is deployed in {store.root}: batch {batch!r} has nothing to be compared with.")
    champion = model_store.champion(version)
    pooled = (decision.pooled_batches or []) if decision else []
    frames = load_batches(context.instance, artifacts, [*pooled, batch])
    frame = frames.pop(batch)
    settings = policy.drift_settings()
    html = batch_report(frame, champion, policy.thresholds(), settings, reference_key(store, champion), frames)
    url = write_report(artifacts, batch, html)
    return Output(None, metadata={"report_path": MetadataValue.path(url), "champion_version": version})


def write_report(artifacts: ArtifactStorage, batch: str, html: str) -> str:
    """Store a batch's HTML drift report, one path per batch whoever renders it; its URL."""
    url = artifacts.url("reports", "drift_report", f"{files.validate_batch_key(batch)}.html")
    artifacts.write(url, html.encode())
    return url


def latest_drift_decision(instance: DagsterInstance, batch: str) -> DriftDecision | None:
    """What the latest drift report of ``batch`` decided, or None if its run never got that far."""
    metadata = latest_metadata(instance, DRIFT_REPORT, batch)
    return DriftDecision.from_metadata(metadata) if metadata is not None else None


def drift_metadata(assessment: DriftAssessment, thresholds: MonitoringThresholds) -> dict[str, object]:
    """The decision as the contract writes it (``DriftDecision``), and what the UI shows beside it."""
    drift = assessment.drift
    metadata: dict[str, object] = DriftDecision.of(assessment).as_metadata() | gate_metadata(assessment, thresholds)
    if assessment.report_url:
        metadata["report_path"] = MetadataValue.path(assessment.report_url)
    if drift.compared:
        metadata["drift_report_rendered"] = assessment.report_url is not None
    if assessment.champion_scoring is not None:
        metadata["champion_rows_scored"] = assessment.champion_scoring.rows
        metadata["champion_rows_computed"] = assessment.champion_scoring.rows_computed
    if drift.sample is not None:
        metadata |= sampling_metadata(drift)
    if drift.columns:
        rows = "\n".join(
            f"| {c.column} | {c.method} | {c.score:.4g} | {_bound(c.error_bound)} | {c.threshold:.3g} "
            f"| {'yes' if c.drifted else 'no'} | {_importance(c.importance)} |"
            for c in drift.top_columns(TOP_DRIFTED_COLUMNS)
        )
        metadata["top_drifted_columns"] = MetadataValue.md(
            "| column | test | score | ± bound | threshold | drifted | importance |\n|---|---|---|---|---|---|---|\n"
            + rows
        )
    return metadata


def gate_metadata(assessment: DriftAssessment, thresholds: MonitoringThresholds) -> dict[str, object]:
    """Every threshold the gate compared a figure with, and the history figures it used (None ones left out)."""
    evidence, interval, rules = assessment.decision.evidence, assessment.champion_auc_interval, thresholds.rules
    figures: dict[str, object | None] = {
        "drift_share_threshold": thresholds.drift_share,
        "severe_drift_share": rules.severe_drift_share,
        "quality_drop_threshold_auc": thresholds.quality_drop_auc,
        "decision_confidence": thresholds.decision_confidence,
        "min_rows_for_decision": thresholds.min_rows_for_decision,
        "champion_deployed_auc": assessment.champion_deployed_auc,
        "champion_auc_lower": interval.lower if interval else None,
        "drift_importance_weighted": assessment.drift.weighed,
    }
    if evidence is not None:
        figures |= {
            "drift_gate_threshold": evidence.drift_threshold,
            "drift_streak": evidence.drift_streak,
            "drift_patience": evidence.drift_patience,
            "quality_streak": evidence.quality_streak,
            "quality_patience": evidence.quality_patience,
            "cooldown_batches": evidence.cooldown_batches,
            "batches_since_retrain": evidence.batches_since_retrain,
            "wasted_drift_retrains": evidence.wasted_drift_retrains,
            "wasted_quality_retrains": evidence.wasted_quality_retrains,
        }
    return {key: value for key, value in figures.items() if value is not None}


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


def _importance(importance: float | None) -> str:
    return "n/a" if importance is None else f"{importance:.1%}"


def _bound(bound: float | None) -> str:
    return "n/a (p-value)" if bound is None else f"{bound:.2g}"
