from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from green_pipeline.compression.techniques import prune_tree_prefix
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.training.evaluation import auc

if TYPE_CHECKING:
    from conftest import TrainedModel


def test_pruning_stays_within_the_auc_tolerance_and_shrinks_the_model(
    day0_model: TrainedModel, schema: FeatureSchema
) -> None:
    booster, holdout = day0_model.result.booster, day0_model.split.valid

    result = prune_tree_prefix(booster, holdout, schema, auc_tolerance=0.01)

    assert result.technique == "tree_prefix_pruning"
    assert result.trees_before == booster.num_trees()
    assert result.trees_after <= result.trees_before
    assert result.auc_after >= result.auc_before - 0.01
    assert result.size_bytes_after <= result.size_bytes_before
    assert result.size_ratio <= 1.0
    assert result.booster.num_trees() == result.trees_after
    assert auc(result.booster, holdout, schema) == pytest.approx(result.auc_after)
    assert result.auc_before == pytest.approx(auc(booster, holdout, schema))


def test_zero_tolerance_never_loses_auc(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    result = prune_tree_prefix(day0_model.result.booster, day0_model.split.valid, schema, auc_tolerance=0.0)

    assert result.auc_after >= result.auc_before
    assert result.trees_after <= result.trees_before


def test_a_loose_tolerance_keeps_the_shortest_prefix(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    booster = day0_model.result.booster

    result = prune_tree_prefix(booster, day0_model.split.valid, schema, auc_tolerance=1.0)

    assert result.trees_after == max(1, math.ceil(booster.num_trees() * 0.05))
    assert result.size_bytes_after < result.size_bytes_before
    assert len(result.booster.model_to_string().encode()) == result.size_bytes_after


def test_pruning_leaves_the_original_booster_intact(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    booster = day0_model.result.booster
    trees, text = booster.num_trees(), booster.model_to_string()

    prune_tree_prefix(booster, day0_model.split.valid, schema, auc_tolerance=1.0)

    assert booster.num_trees() == trees
    assert booster.model_to_string() == text
