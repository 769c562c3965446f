"""Batch scoring: each batch scored once by the model that was serving when it arrived, through a cache."""

import io
from collections.abc import Iterator

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.energy.measurement import measure_energy
from green_pipeline.orchestration.metadata import DRIFT_REPORT, PREDICTIONS, VALIDATED_BATCH, ScoringRecord
from green_pipeline.orchestration.resources import ArtifactStorage, EnergyResource, ModelStoreResource, RetrainPolicy
from green_pipeline.records import DriftAssessment
from green_pipeline.serving.scoring import score_batch, serving_predictor


@metered_asset(
    key=PREDICTIONS,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH), "drift_report": AssetIn(DRIFT_REPORT)},
    partitions_def=batch_partitions,
    group_name="deployment",
    io_manager_key="artifact_io_manager",
    output_required=False,
)
def predictions(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    drift_report: DriftAssessment,
    model_store: ModelStoreResource,
    artifacts: ArtifactStorage,
    energy: EnergyResource,
    policy: RetrainPolicy,
) -> Iterator[Output[pd.DataFrame]]:
    """Scores (row hash, score) of the batch; rows already scored by the same model version come from the cache.

    Skipped for a batch that arrived before any model was deployed: there was nothing serving to score it.
    A compiled engine is built here from the verified text, never read from the store; this step pays its build.
    """
    version = drift_report.champion_version
    if version is None:
        context.log.info("Scoring skipped: no model was serving when this batch arrived.")
        return
    model = model_store.champion(version)
    cache_url = artifacts.url("prediction_cache", model_store.model_name, f"{version}.parquet")
    cached = artifacts.read(cache_url)
    serving = serving_predictor(model, energy.to_settings(), policy.num_threads)
    with measure_energy(energy.to_settings()) as scoring:
        result = score_batch(
            serving.predict, model.schema, validated_batch, pd.read_parquet(io.BytesIO(cached)) if cached else None
        )
    buffer = io.BytesIO()
    result.cache.to_parquet(buffer, index=False)
    artifacts.write(cache_url, buffer.getvalue())
    report = scoring.report
    assert report is not None, "measure_energy reports when its block ends"
    record = ScoringRecord(
        model_version=version,
        rows_scored=result.rows,
        rows_computed=result.rows_computed,
        cache_hits=result.cache_hits,
        cache_hit_rate=result.hit_rate,
        scoring_duration_s=report.duration_s,
        energy_per_1k_predictions_kwh=(
            report.energy_kwh / result.rows * 1000 if report.energy_kwh is not None and result.rows else None
        ),
    )
    yield Output(result.predictions, metadata={**record.as_metadata(), **serving.as_metadata()})
