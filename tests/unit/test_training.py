from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import LABEL, StreamSpec
from green_pipeline.errors import TrainingError
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, TrainResult, split_batch, train_model

if TYPE_CHECKING:
    from conftest import TrainedModel

SHIFT_DAY = 5


@pytest.fixture(scope="module")
def shifted_split(stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame]) -> BatchSplit:
    name = stream_spec.batch_name(SHIFT_DAY)
    return split_batch(make_clean_batch(SHIFT_DAY), LABEL, name, name)


@pytest.fixture(scope="module")
def warm_start(
    shifted_split: BatchSplit, schema: FeatureSchema, training_settings: TrainingSettings, day0_model: TrainedModel
) -> TrainResult:
    return train_model(shifted_split, schema, Strategy.WARM_START, training_settings, day0_model.result.booster)


def test_split_is_deterministic_for_the_same_batch_name(batch: pd.DataFrame) -> None:
    first = split_batch(batch, LABEL, "batch-2026-01-01.parquet", "src")
    again = split_batch(batch, LABEL, "batch-2026-01-01.parquet", "src")

    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(first, part), getattr(again, part))


def test_split_depends_on_the_batch_name(batch: pd.DataFrame) -> None:
    first = split_batch(batch, LABEL, "batch-2026-01-01.parquet", "src")
    other = split_batch(batch, LABEL, "batch-2026-01-02.parquet", "src")

    assert not first.test.equals(other.test)


def test_split_is_60_20_20_disjoint_and_stratified(batch: pd.DataFrame) -> None:
    batch = batch.assign(row_id=range(len(batch)))

    split = split_batch(batch, LABEL, "batch-2026-01-01.parquet", "src")

    assert (len(split.train), len(split.valid), len(split.test)) == (1200, 400, 400)
    ids = [set(part["row_id"]) for part in (split.train, split.valid, split.test)]
    assert set.union(*ids) == set(range(len(batch)))
    assert sum(len(i) for i in ids) == len(batch)
    overall = batch[LABEL].mean()
    for part in (split.train, split.valid, split.test):
        assert part[LABEL].mean() == pytest.approx(overall, abs=0.005)


def test_single_class_labels_are_refused_naming_the_label(batch: pd.DataFrame) -> None:
    batch[LABEL] = 0

    with pytest.raises(TrainingError, match=r"batch-x\.csv: label 'churned' has a single class"):
        split_batch(batch, LABEL, "batch-x.csv", "batch-x.csv")


def test_too_few_rows_of_the_rarer_class_are_refused(batch: pd.DataFrame) -> None:
    batch[LABEL] = 0
    batch.loc[:3, LABEL] = 1

    with pytest.raises(TrainingError, match=r"batch-x\.csv: fewer than 5 rows of the rarer class in 'churned'"):
        split_batch(batch, LABEL, "batch-x.csv", "batch-x.csv")


def test_full_retrain_learns_the_churn_signal(day0_model: TrainedModel, training_settings: TrainingSettings) -> None:
    result = day0_model.result

    assert day0_model.test_auc > 0.7
    assert result.strategy is Strategy.FULL
    assert 0 < result.trees <= training_settings.max_trees_full
    assert result.new_trees == result.trees == result.booster.num_trees()
    assert result.train_rows == len(day0_model.split.train)
    assert 0.7 < result.valid_auc <= 1.0


def test_full_retrain_is_reproducible(
    day0_model: TrainedModel, schema: FeatureSchema, training_settings: TrainingSettings
) -> None:
    again = train_model(day0_model.split, schema, Strategy.FULL, training_settings)

    assert again.booster.model_to_string() == day0_model.result.booster.model_to_string()


def test_full_retrain_keeps_the_best_iteration_only(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    """The returned booster is trimmed to the early-stopping best iteration, whose AUC is the reported one."""
    assert auc(day0_model.result.booster, day0_model.split.valid, schema) == pytest.approx(day0_model.result.valid_auc)


def test_warm_start_adds_trees_to_the_champion(
    warm_start: TrainResult, day0_model: TrainedModel, training_settings: TrainingSettings
) -> None:
    champion_trees = day0_model.result.trees

    assert warm_start.strategy is Strategy.WARM_START
    assert warm_start.trees > champion_trees
    assert warm_start.trees == champion_trees + warm_start.new_trees
    assert warm_start.trees == warm_start.booster.num_trees()
    assert 0 < warm_start.new_trees <= training_settings.max_new_trees_warm_start


def test_warm_start_keeps_the_champion_trees_unchanged(
    warm_start: TrainResult, day0_model: TrainedModel, shifted_split: BatchSplit, schema: FeatureSchema
) -> None:
    features = schema.encode(shifted_split.test)
    champion = day0_model.result.booster

    np.testing.assert_allclose(
        warm_start.booster.predict(features, num_iteration=champion.num_trees(), raw_score=True),
        champion.predict(features, raw_score=True),
    )


def test_warm_start_beats_the_champion_on_a_shifted_batch(
    warm_start: TrainResult, day0_model: TrainedModel, shifted_split: BatchSplit, schema: FeatureSchema
) -> None:
    champion_auc = auc(day0_model.result.booster, shifted_split.test, schema)

    assert auc(warm_start.booster, shifted_split.test, schema) > champion_auc


def test_warm_start_without_a_champion_is_refused(
    day0_model: TrainedModel, schema: FeatureSchema, training_settings: TrainingSettings
) -> None:
    with pytest.raises(TrainingError, match="warm start needs a deployed model"):
        train_model(day0_model.split, schema, Strategy.WARM_START, training_settings, champion=None)


def test_auc_needs_both_classes(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    one_class = day0_model.split.test[day0_model.split.test[LABEL] == 1]

    with pytest.raises(TrainingError, match=r"AUC needs both classes of 'churned'"):
        auc(day0_model.result.booster, one_class, schema)
