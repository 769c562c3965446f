"""The four strategies on real LightGBM models: what each keeps, what it changes, and what it buys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.demo.stream import DOMAIN_LABEL, DomainPairSpec, generate_domain_batch
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError, TrainingError
from green_pipeline.serving.scoring import ChampionScores, score_batch, score_through_cache
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.retraining import warm_start_scores
from green_pipeline.training.trainer import (
    TrainingSettings,
    TrainResult,
    full_retrain,
    reference_sample,
    refit,
    split_batch,
    train_model,
    transfer,
    warm_start,
)

if TYPE_CHECKING:
    from conftest import TrainedModel

CleanBatch = Callable[[int], pd.DataFrame]
#: One thread: on a busy shared machine two OpenMP threads stall at every barrier and a second becomes thirty.
SETTINGS = TrainingSettings(num_threads=1)


@pytest.fixture(scope="module")
def refitted(day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema) -> TrainResult:
    """The day-0 champion refitted on a batch after the covariate shift."""
    return refit(day0_model.result.booster, shifted_model.split, schema, SETTINGS)


def test_refit_keeps_every_tree_and_split_and_changes_leaf_values(
    refitted: TrainResult, day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema
) -> None:
    champion = day0_model.result.booster
    features = schema.encode(shifted_model.split.test)

    assert refitted.strategy is Strategy.REFIT
    assert refitted.trees == champion.num_trees() == refitted.booster.num_trees()
    assert refitted.new_trees == 0
    np.testing.assert_array_equal(
        refitted.booster.predict(features, pred_leaf=True), champion.predict(features, pred_leaf=True)
    )
    assert not np.allclose(
        refitted.booster.predict(features, raw_score=True), champion.predict(features, raw_score=True)
    )


def test_refit_beats_the_champion_on_a_shifted_batch(
    refitted: TrainResult, day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema
) -> None:
    test_rows = shifted_model.split.test

    assert auc(refitted.booster, test_rows, schema) > auc(day0_model.result.booster, test_rows, schema) + 0.01
    assert refitted.valid_auc == pytest.approx(auc(refitted.booster, shifted_model.split.valid, schema))


def test_refit_decay_rate_weighs_the_old_leaf_values(
    day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema
) -> None:
    """With decay close to 1 the old leaves dominate, so the model stays closer to the champion."""
    features = schema.encode(shifted_model.split.test)
    champion_scores = day0_model.result.booster.predict(features, raw_score=True)

    def distance(decay: float) -> float:
        result = refit(
            day0_model.result.booster,
            shifted_model.split,
            schema,
            dataclasses.replace(SETTINGS, refit_decay_rate=decay),
        )
        return float(np.abs(result.booster.predict(features, raw_score=True) - champion_scores).mean())

    assert distance(0.9) < distance(0.1)


def test_a_decay_rate_outside_0_1_is_refused_naming_the_setting() -> None:
    with pytest.raises(InvalidConfigError, match=r"policy\.refit_decay_rate 1\.0"):
        TrainingSettings(refit_decay_rate=1.0)


def test_warm_start_adds_trees_and_learns_from_the_reference_sample_too(
    day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema, make_clean_batch: CleanBatch
) -> None:
    extra = reference_sample(make_clean_batch(0), 300, "reference:v0001")

    result = warm_start(day0_model.result.booster, shifted_model.split, schema, SETTINGS, extra)

    assert result.strategy is Strategy.WARM_START
    assert 0 < result.new_trees <= SETTINGS.max_new_trees_warm_start
    assert result.trees == day0_model.result.trees + result.new_trees
    assert result.extra_rows == 300
    assert result.train_rows == len(shifted_model.split.train) + 300
    champion_auc = auc(day0_model.result.booster, shifted_model.split.test, schema)
    assert auc(result.booster, shifted_model.split.test, schema) > champion_auc


def test_a_warm_start_on_cached_champion_scores_is_the_model_lightgbms_init_model_grows(
    tmp_path, day0_model: TrainedModel, shifted_model: TrainedModel, schema: FeatureSchema, make_clean_batch: CleanBatch
) -> None:
    """The drift step's cached scores stand in for LightGBM re-scoring every row: same trees, same predictions."""
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(day0_model.result.booster.model_to_string(), schema, make_clean_batch(0), {}))
    champion, split = store.load(), shifted_model.split
    extra = reference_sample(make_clean_batch(0), 300, "reference:v0001")
    drift_step = score_through_cache(champion, pd.concat([split.train, split.valid]), None, EnergySettings(), 1)
    cached = ChampionScores(champion, drift_step.result.cache)

    stacked = warm_start(champion.booster, split, schema, SETTINGS, extra, warm_start_scores(cached, split, extra))
    grown = warm_start(champion.booster, split, schema, SETTINGS, extra)

    assert stacked.trees == grown.trees and stacked.new_trees == grown.new_trees > 0
    assert stacked.valid_auc == pytest.approx(grown.valid_auc, abs=1e-12)
    features = schema.encode(split.test)
    np.testing.assert_allclose(stacked.booster.predict(features), grown.booster.predict(features), rtol=0, atol=1e-9)


def test_champion_scores_are_read_from_the_cache_and_computed_only_for_rows_it_lacks(
    tmp_path, day0_model: TrainedModel, schema: FeatureSchema, make_clean_batch: CleanBatch
) -> None:
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(day0_model.result.booster.model_to_string(), schema, make_clean_batch(0), {}))
    champion, batch, other = store.load(), make_clean_batch(1).head(200), make_clean_batch(2).head(50)
    planted = score_batch(lambda rows: np.full(len(rows), 0.25), schema, batch, None).cache

    scores = ChampionScores(champion, planted).probabilities(pd.concat([batch, other]))

    assert (scores[:200] == 0.25).all(), "a cached row was computed again"
    np.testing.assert_allclose(scores[200:], champion.booster.predict(schema.encode(other)), rtol=1e-12)
    assert ChampionScores(champion, planted).raw(batch) == pytest.approx(np.full(200, np.log(0.25 / 0.75)))


def test_full_retrain_on_the_same_window_starts_from_nothing(
    shifted_model: TrainedModel, schema: FeatureSchema, make_clean_batch: CleanBatch
) -> None:
    extra = reference_sample(make_clean_batch(0), 300, "reference:v0001")

    result = full_retrain(shifted_model.split, schema, SETTINGS, extra)

    assert result.strategy is Strategy.FULL
    assert result.new_trees == result.trees > 0
    assert (result.train_rows, result.extra_rows) == (len(shifted_model.split.train) + 300, 300)


def test_reference_sample_is_seeded_by_name_and_bounded(make_clean_batch: CleanBatch) -> None:
    reference = make_clean_batch(0)

    first = reference_sample(reference, 100, "reference:v0001")

    pd.testing.assert_frame_equal(first, reference_sample(reference, 100, "reference:v0001"))
    assert not first.index.equals(reference_sample(reference, 100, "reference:v0002").index)
    assert len(reference_sample(reference, 10 * len(reference), "x")) == len(reference)
    assert reference_sample(reference, 0, "x").empty


@pytest.mark.parametrize("strategy", [Strategy.REFIT, Strategy.WARM_START, Strategy.TRANSFER])
def test_strategies_that_start_from_a_model_refuse_to_run_without_one(
    strategy: Strategy, shifted_model: TrainedModel, schema: FeatureSchema
) -> None:
    with pytest.raises(TrainingError, match=f"{strategy.value.replace('_', ' ')} needs a deployed model"):
        train_model(shifted_model.split, schema, strategy, SETTINGS, champion=None)


def test_transfer_from_a_source_domain_beats_scratch_on_a_tiny_target_batch() -> None:
    """600 target rows are too few to learn from; a source-domain model supplies the shared structure."""
    spec = DomainPairSpec(source_rows=6000, target_rows=600, relationship_shift=0.3)
    source = generate_domain_batch(spec, "source", spec.source_rows)
    target = generate_domain_batch(spec, "target", spec.target_rows)
    later = generate_domain_batch(spec, "target", 4000, part=1)
    schema = infer_schema(source, DatasetSpec(label=DOMAIN_LABEL), "source")
    base = full_retrain(split_batch(source, DOMAIN_LABEL, "source", "source"), schema, SETTINGS)
    small = split_batch(target, DOMAIN_LABEL, "target", "target")

    tuned = transfer(base.booster, small, schema, SETTINGS)
    scratch = full_retrain(small, schema, SETTINGS)

    assert tuned.strategy is Strategy.TRANSFER and tuned.trees == base.trees + tuned.new_trees
    assert auc(tuned.booster, later, schema) > auc(scratch.booster, later, schema) + 0.02
    assert auc(tuned.booster, later, schema) > auc(base.booster, later, schema)
