"""Deployment group, first half: the compressed model, the cheapest measured candidate within the AUC budget."""

import dataclasses
from typing import Any

import lightgbm as lgb
import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output
from pydantic import Field

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.compression.measure import ENERGY_BASIS
from green_pipeline.compression.search import (
    RETRAINED_CANDIDATES,
    CompressionOutcome,
    CompressionSettings,
    compress_model,
)
from green_pipeline.compression.table import candidates_table
from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.orchestration.learning import learning_split
from green_pipeline.orchestration.metadata import COMPRESSED_MODEL, RETRAINED_MODEL, VALIDATED_BATCH, CompressionRecord
from green_pipeline.orchestration.pods import HEAVY_STEP_TAGS
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    DaskResource,
    EnergyResource,
    ModelStoreResource,
    RetrainPolicy,
)
from green_pipeline.records import CandidateModel, CompressedModel
from green_pipeline.store.model_store import dropped_features
from green_pipeline.training.evaluation import auc

_COMPRESSION = CompressionSettings()


class CompressionConfig(Config):
    """Run settings of the compression step; defaults from ``CompressionSettings``.

    Its AUC budget and threads are the policy's (``compression_auc_tolerance``, ``num_threads``), shared with the
    other steps.
    """

    compile_engine: str | None = Field(
        default=_COMPRESSION.compile_engine,
        description="Engine that compiles the best text model (lleaves); off by default: a compile costs tens of "
        "seconds per retrain here and pays off only over many predictions (see bench/compression.py).",
    )
    expected_predictions: int = Field(
        default=_COMPRESSION.expected_predictions,
        ge=1,
        description="Predictions expected before the next retrain: a candidate is built only if it could save more "
        "than its search costs over them, and a compile is amortized over them.",
    )
    max_compile_trees: int = Field(
        default=_COMPRESSION.max_compile_trees, ge=1, description="Larger models are not compiled (compile time)."
    )
    timing_rows: int = Field(
        default=_COMPRESSION.timing_rows,
        ge=1,
        description="Rows (held-out rows repeated) each candidate predicts, repeatedly, to time it.",
    )
    min_timing_s: float = Field(
        default=_COMPRESSION.min_timing_s, ge=0.0, description="Shortest timed prediction per candidate."
    )
    feature_selection: bool = Field(
        default=_COMPRESSION.feature_selection,
        description="Also retrain on the fewest features holding feature_gain_share of the model's gain; if kept "
        "(within the AUC budget), the deployed schema lists only them and later batches are read, validated and "
        "drift-tested on them alone. Off by default: no later step can bring a dropped column back.",
    )
    feature_gain_share: float = Field(
        default=_COMPRESSION.feature_gain_share,
        gt=0.0,
        le=1.0,
        description="Share of the model's gain the kept features must hold together.",
    )

    def to_settings(self, policy: RetrainPolicy) -> CompressionSettings:
        return CompressionSettings(
            auc_budget=policy.compression_auc_tolerance,
            expected_predictions=self.expected_predictions,
            compile_engine=self.compile_engine or None,
            max_compile_trees=self.max_compile_trees,
            timing_rows=self.timing_rows,
            min_timing_s=self.min_timing_s,
            num_threads=policy.num_threads,
            feature_selection=self.feature_selection,
            feature_gain_share=self.feature_gain_share,
            training=policy.training_settings(),
        )


@metered_asset(
    key=COMPRESSED_MODEL,
    ins={"validated_batch": AssetIn(VALIDATED_BATCH, dagster_type=Any), "retrained_model": AssetIn(RETRAINED_MODEL)},
    partitions_def=batch_partitions,
    group_name="deployment",
    io_manager_key="artifact_io_manager",
    # Its pod on the k8s executor: the cores the candidates are trained and timed on (docs/DISTRIBUTED.md).
    op_tags=HEAVY_STEP_TAGS,
)
def compressed_model(
    context: AssetExecutionContext,
    config: CompressionConfig,
    validated_batch: pd.DataFrame | DatasetBatch,
    retrained_model: CandidateModel,
    policy: RetrainPolicy,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    model_store: ModelStoreResource,
    dask: DaskResource,
) -> Output[CompressedModel]:
    """Pruned, retrained-smaller, distilled, quantized and compiled candidates, measured; the cheapest kept.

    Judged on lifetime energy: a candidate that cannot pay back its search over ``expected_predictions`` is not
    built (the candidates table says why); the others are judged on validation rows (AUC within the budget, energy
    per 1,000 predictions). The chosen model is what deployed_model publishes, so it is the one model_evaluation
    compares with the champion on the test rows. The rows are those the model learned from: this batch's and the
    pooled ones' (``learning_split``; of a dataset batch, a sample). A feature selection (``feature_selection``)
    runs once per lineage: not when the parent version dropped features already.
    """
    schema = retrained_model.schema
    split, _ = learning_split(context.instance, artifacts, dask, energy, retrained_model, validated_batch)
    teacher = retrained_model.booster()
    parent = retrained_model.parent_version
    dropped = dropped_features(model_store.store().metadata(parent)) if parent else ()
    settings = config.to_settings(policy)
    outcome = compress_model(teacher, split.train, split.valid, schema, settings, energy.to_settings(), dropped)
    chosen_booster = lgb.Booster(model_str=outcome.chosen.model_text)
    compressed = _record(retrained_model, outcome, auc(chosen_booster, split.test, outcome.schema))
    context.log.info(
        f"compression chose {outcome.chosen.name}; {outcome.compile_status}; "
        f"feature selection: {outcome.selection.status}"
    )
    return Output(compressed, metadata=_metadata(outcome, compressed, auc(teacher, split.test, schema)))


def _record(retrained: CandidateModel, outcome: CompressionOutcome, test_auc: float) -> CompressedModel:
    chosen, baseline = outcome.chosen, outcome.baseline
    assert chosen.holdout_auc is not None and baseline.holdout_auc is not None
    retrained_here = chosen.name.split("+")[0] in RETRAINED_CANDIDATES
    return CompressedModel(
        model=dataclasses.replace(
            retrained,
            model_text=chosen.model_text,
            schema=outcome.schema,
            trees=chosen.trees,
            new_trees=chosen.trees if retrained_here else max(0, retrained.new_trees - (baseline.trees - chosen.trees)),
        ),
        technique=chosen.name,
        trees_before=baseline.trees,
        auc_before=baseline.holdout_auc,
        auc_after=chosen.holdout_auc,
        test_auc=test_auc,
        size_bytes_before=baseline.size_bytes,
        size_bytes_after=chosen.size_bytes,
        engine=chosen.engine,
        energy_per_1k_predictions_kwh=outcome.cost_per_1k(chosen) if outcome.cost_basis == ENERGY_BASIS else None,
        energy_per_1k_predictions_kwh_before=(
            outcome.cost_per_1k(baseline) if outcome.cost_basis == ENERGY_BASIS else None
        ),
        dropped_features=outcome.selection.dropped,
    )


def _metadata(outcome: CompressionOutcome, compressed: CompressedModel, test_auc_before: float) -> dict[str, Any]:
    """Numbers as numbers (the UI plots them per partition) and the table of every candidate as Markdown."""
    assert outcome.chosen.inference is not None
    metadata: dict[str, Any] = {
        **CompressionRecord.of(compressed).as_metadata(),
        "compile_status": outcome.compile_status,
        "feature_selection_status": outcome.selection.status,
        "features": len(outcome.schema.features),
        "dropped_features": MetadataValue.json(list(compressed.dropped_features)),
        "candidates": MetadataValue.md(candidates_table(outcome)),
        "cost_basis": outcome.cost_basis,
        "auc_budget": outcome.settings.auc_budget,
        "expected_predictions": outcome.settings.expected_predictions,
        "candidates_tried": len(outcome.candidates) - 1,
        "candidates_skipped": len(outcome.skipped),
        "trees_before": compressed.trees_before,
        "trees_after": compressed.model.trees,
        "model_size_bytes_before": compressed.size_bytes_before,
        "model_size_bytes": compressed.size_bytes_after,
        "size_ratio": outcome.size_ratio,
        "rows_per_s": outcome.chosen.inference.rows_per_s,
        "speedup": outcome.speedup,
        "valid_auc_before": compressed.auc_before,
        "valid_auc_after": compressed.auc_after,
        "auc_delta": outcome.auc_delta,
        "test_auc_delta": compressed.test_auc - test_auc_before,
    }
    if compressed.energy_per_1k_predictions_kwh is not None:
        metadata["energy_per_1k_predictions_kwh"] = compressed.energy_per_1k_predictions_kwh
        metadata["energy_per_1k_predictions_kwh_before"] = compressed.energy_per_1k_predictions_kwh_before
        metadata["energy_per_1k_ratio"] = outcome.cost_ratio
        metadata["expected_lifetime_saving_kwh"] = outcome.lifetime_saving
    return metadata
