"""Batch scoring: each batch scored once by the model that was serving when it arrived, through a cache.

The drift step scores the batch first (its quality check needs the champion's scores) through the same cache, so
``predictions`` reads those scores instead of computing them again, and reports what that one scoring cost.
"""

import io
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.distributed.metering import CLUSTER_ENERGY_KWH
from green_pipeline.energy.measurement import complete_sum
from green_pipeline.orchestration.cluster_batches import score_dataset
from green_pipeline.orchestration.metadata import DRIFT_REPORT, PREDICTIONS, VALIDATED_BATCH, ScoringRecord
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    DaskResource,
    EnergyResource,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.records import DriftAssessment
from green_pipeline.serving.scoring import CachedScoring, score_through_cache, served_engine
from green_pipeline.store.model_store import DeployedModel


@metered_asset(
    key=PREDICTIONS,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any), "drift_report": AssetIn(DRIFT_REPORT)},
    partitions_def=batch_partitions,
    group_name="deployment",
    io_manager_key="artifact_io_manager",
    output_required=False,
)
def predictions(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame | DatasetBatch,
    drift_report: DriftAssessment,
    model_store: ModelStoreResource,
    artifacts: ArtifactStorage,
    energy: EnergyResource,
    policy: RetrainPolicy,
    dask: DaskResource,
) -> Iterator[Output[pd.DataFrame | DatasetBatch]]:
    """Scores (row hash, score) of the batch; rows already scored by the same model version come from the cache,
    normally all of them: the drift step scored the batch with the same version.

    Skipped for a batch that arrived before any model was deployed: there was nothing serving to score it.
    A compiled engine is built from the verified text, never read from the store, by the step that computes.
    A dataset batch is scored part by part on the cluster into a Parquet dataset of predictions, every row computed
    (the prediction cache holds only the drift step's sample).
    """
    version = drift_report.champion_version
    if version is None:
        context.log.info("Scoring skipped: no model was serving when this batch arrived.")
        return
    model = model_store.champion(version)
    if isinstance(validated_batch, DatasetBatch):
        out_url = artifacts.url(*PREDICTIONS.path, context.partition_key, context.run.run_id)
        yield score_on_cluster(dask, energy, artifacts, validated_batch, model, out_url)
        return
    scoring = score_cached(model, validated_batch, model_store, artifacts, energy, policy)
    result, own = scoring.result, scoring.cost
    # The batch's scores cost what the drift step's scoring and this step's cache read cost together.
    shared = drift_report.champion_scoring
    spent = complete_sum([own.energy_kwh] + ([shared.energy_kwh] if shared else []))
    record = ScoringRecord(
        model_version=version,
        rows_scored=result.rows,
        rows_computed=result.rows_computed,
        cache_hits=result.cache_hits,
        cache_hit_rate=result.hit_rate,
        scoring_duration_s=own.duration_s + (shared.duration_s if shared else 0.0),
        energy_per_1k_predictions_kwh=(spent / result.rows * 1000 if spent is not None and result.rows else None),
        rows_computed_by_drift_step=shared.rows_computed if shared else None,
    )
    engine = scoring.engine.as_metadata() if scoring.engine else {"engine": served_engine(model)}
    yield Output(result.predictions, metadata={**record.as_metadata(), **engine})


def score_on_cluster(
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    batch: DatasetBatch,
    model: DeployedModel,
    out_url: str,
) -> Output[DatasetBatch]:
    """The dataset's predictions computed on the workers, with the scoring record of what they cost there."""
    started = time.perf_counter()
    scored, cluster = score_dataset(
        dask, energy, artifacts, batch, model.booster.model_to_string(), model.schema, out_url
    )
    workers_kwh = cluster.get(CLUSTER_ENERGY_KWH)
    record = ScoringRecord(
        model_version=model.version,
        rows_scored=scored.rows,
        rows_computed=scored.rows,
        cache_hits=0,
        cache_hit_rate=0.0,
        scoring_duration_s=time.perf_counter() - started,
        energy_per_1k_predictions_kwh=float(workers_kwh) / scored.rows * 1000 if workers_kwh is not None else None,
    )
    return Output(scored, metadata={**record.as_metadata(), **cluster, "parts": len(scored.parts)})


def score_cached(
    model: DeployedModel,
    frame: pd.DataFrame,
    model_store: ModelStoreResource,
    artifacts: ArtifactStorage,
    energy: EnergyResource,
    policy: RetrainPolicy,
) -> CachedScoring:
    """Score ``frame`` with ``model`` through the version's prediction cache, storing the rows it computed."""
    cache = prediction_cache(model_store, artifacts, model.version)
    scoring = score_through_cache(model, frame, cache, energy.to_settings(), policy.num_threads)
    if scoring.result.rows_computed:
        buffer = io.BytesIO()
        scoring.result.cache.to_parquet(buffer, index=False)
        artifacts.write(_cache_url(model_store, artifacts, model.version), buffer.getvalue())
    return scoring


def prediction_cache(model_store: ModelStoreResource, artifacts: ArtifactStorage, version: str) -> pd.DataFrame | None:
    """The scores (row_hash, score) ``version`` has computed so far, or None before its first scoring."""
    cached = artifacts.read(_cache_url(model_store, artifacts, version))
    return pd.read_parquet(io.BytesIO(cached)) if cached else None


def _cache_url(model_store: ModelStoreResource, artifacts: ArtifactStorage, version: str) -> str:
    return artifacts.url("prediction_cache", model_store.model_name, f"{version}.parquet")
