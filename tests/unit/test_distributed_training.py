"""LightGBM on a local Dask cluster of two worker processes: the same settings, the same quality as one machine."""

import dask.array as da
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.metrics import roc_auc_score

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.distributed.partitions import TrainingArrays, feature_matrix
from green_pipeline.distributed.training import (
    boost_on_dask,
    early_stopping_round,
    full_retrain_on_dask,
    sorted_auc,
    validation_curve,
)
from green_pipeline.errors import TrainingError
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, split_batch

#: Data-parallel LightGBM finds bin boundaries per worker and sums histograms across them, so its trees differ
#: slightly from one machine's; on 6,000 training rows the test AUCs differed by about 0.001.
AUC_TOLERANCE = 0.01
SETTINGS = TrainingSettings(max_trees_full=300, early_stopping_rounds=20)


def arrays(frame: pd.DataFrame, schema: FeatureSchema, champion: lgb.Booster | None = None) -> TrainingArrays:
    """The rows as the dataset path hands them to lightgbm.dask: float32 codes, in 4 chunks."""
    chunks = -(-len(frame) // 4)
    raw = champion.predict(schema.encode(frame), raw_score=True) if champion else None
    return TrainingArrays(
        features=da.from_array(feature_matrix(frame, schema), chunks=(chunks, -1)),
        labels=da.from_array(schema.labels(frame).to_numpy(), chunks=chunks),
        init_scores=da.from_array(np.asarray(raw), chunks=chunks) if champion else None,
        rows=len(frame),
    )


@pytest.fixture(scope="module")
def batch() -> tuple[BatchSplit, FeatureSchema]:
    frame = generate_day(StreamSpec(rows_per_day=10000), 0)
    schema = infer_schema(frame, DatasetSpec(label=LABEL), "day-0")
    clean = validate_batch(frame, schema, "day-0")[0]
    return split_batch(clean, LABEL, "day-0", "day-0"), schema


@pytest.fixture(scope="module")
def client(dask_client: Client) -> Client:
    return dask_client


def test_dask_training_reaches_single_machine_auc_with_a_plain_booster(
    batch: tuple[BatchSplit, FeatureSchema], client: Client
) -> None:
    split, schema = batch
    single = full_retrain(split, schema, SETTINGS)
    result = full_retrain_on_dask(arrays(split.train, schema), split.valid, schema, SETTINGS, client)

    assert abs(auc(result.booster, split.test, schema) - auc(single.booster, split.test, schema)) <= AUC_TOLERANCE
    assert result.strategy is Strategy.FULL and result.train_rows == len(split.train)
    assert 0 < result.trees < SETTINGS.max_trees_full and result.trees == result.new_trees
    assert result.valid_auc == pytest.approx(auc(result.booster, split.valid, schema))
    # The store, compression and scoring read the model text: it must load as a single-machine booster.
    reloaded = lgb.Booster(model_str=result.booster.model_to_string())
    assert reloaded.num_trees() == result.trees


def test_the_cut_keeps_the_rounds_lightgbm_early_stopping_keeps(batch: tuple[BatchSplit, FeatureSchema]) -> None:
    split, schema = batch
    train_set = lgb.Dataset(schema.encode(split.train), schema.labels(split.train), free_raw_data=False)
    grown = lgb.train(SETTINGS.params(), train_set, num_boost_round=SETTINGS.max_trees_full)
    stopped = full_retrain(split, schema, SETTINGS)

    curve = validation_curve(grown, split.valid, schema)

    assert len(curve) == SETTINGS.max_trees_full
    assert early_stopping_round(curve, SETTINGS.early_stopping_rounds) == stopped.trees
    assert curve[stopped.trees - 1] == pytest.approx(stopped.valid_auc)


def test_early_stopping_round_follows_patience() -> None:
    assert early_stopping_round([0.6, 0.7, 0.69, 0.68, 0.9], patience=2) == 2
    assert early_stopping_round([0.6, 0.7, 0.69, 0.68, 0.9], patience=3) == 5
    assert early_stopping_round([0.7, 0.7, 0.7], patience=5) == 1


def test_single_class_validation_rows_are_refused(batch: tuple[BatchSplit, FeatureSchema], client: Client) -> None:
    split, schema = batch
    one_class = split.valid[split.valid[LABEL] == 0]
    with pytest.raises(TrainingError, match="validation rows: label 'churned' has a single class"):
        full_retrain_on_dask(arrays(split.train, schema), one_class, schema, SETTINGS, client)


def test_a_warm_start_on_dask_boosts_from_the_champions_raw_scores_and_stacks_its_trees(
    batch: tuple[BatchSplit, FeatureSchema], client: Client
) -> None:
    split, schema = batch
    champion = full_retrain(split, schema, TrainingSettings(max_trees_full=20, early_stopping_rounds=20)).booster
    result = boost_on_dask(arrays(split.train, schema, champion), split.valid, schema, SETTINGS, client, champion)

    assert result.strategy is Strategy.WARM_START
    assert result.trees == champion.num_trees() + result.new_trees and result.new_trees > 0
    assert result.new_trees <= SETTINGS.max_new_trees_warm_start
    # The stacked model scores what the champion and the new trees score together, and improves on the champion.
    assert result.valid_auc == pytest.approx(auc(result.booster, split.valid, schema))
    assert result.valid_auc > auc(champion, split.valid, schema)


def test_the_curves_auc_is_sklearns_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.3
    for scores in (rng.random(5000), np.round(rng.random(5000), 1), np.zeros(5000)):
        order = np.argsort(scores, kind="stable")
        assert sorted_auc(labels[order], scores[order]) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
