"""Deployment group, first half: the compressed model, measured on held-out rows of the batch."""

import dataclasses

import pandas as pd
from dagster import AssetExecutionContext, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.compression import prune_tree_prefix
from green_pipeline.evaluation import auc
from green_pipeline.records import CandidateModel, CompressedModel
from green_pipeline.resources import RetrainPolicy
from green_pipeline.training import split_batch


@metered_asset(partitions_def=batch_partitions, group_name="deployment", io_manager_key="artifact_io_manager")
def compressed_model(
    context: AssetExecutionContext,
    validated_batch: pd.DataFrame,
    retrained_model: CandidateModel,
    policy: RetrainPolicy,
) -> Output[CompressedModel]:
    """The smallest tree prefix of the challenger within the AUC budget, chosen on validation rows."""
    schema = retrained_model.schema
    split = split_batch(validated_batch, schema.label, retrained_model.batch, retrained_model.batch)
    result = prune_tree_prefix(retrained_model.booster(), split.valid, schema, policy.compression_auc_tolerance)
    compressed = CompressedModel(
        model=dataclasses.replace(
            retrained_model,
            model_text=result.booster.model_to_string(),
            trees=result.trees_after,
            new_trees=max(0, retrained_model.new_trees - (result.trees_before - result.trees_after)),
        ),
        technique=result.technique,
        trees_before=result.trees_before,
        auc_before=result.auc_before,
        auc_after=result.auc_after,
        test_auc=auc(result.booster, split.test, schema),
        size_bytes_before=result.size_bytes_before,
        size_bytes_after=result.size_bytes_after,
    )
    context.log.info(f"{result.technique}: {result.trees_before} -> {result.trees_after} trees")
    return Output(
        compressed,
        metadata={
            "technique": result.technique,
            "trees_before": result.trees_before,
            "trees_after": result.trees_after,
            "valid_auc_before": result.auc_before,
            "valid_auc_after": result.auc_after,
            "test_auc": compressed.test_auc,
            "model_size_bytes_before": result.size_bytes_before,
            "model_size_bytes": result.size_bytes_after,
            "size_ratio": result.size_ratio,
        },
    )
