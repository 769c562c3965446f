"""LightGBM on a local Dask cluster of two worker processes: the same settings, the same quality as one machine."""

from collections.abc import Iterator

import dask.dataframe as dd
import lightgbm as lgb
import pytest
from distributed import Client, LocalCluster

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.errors import TrainingError
from green_pipeline.training.distributed import early_stopping_round, full_retrain_on_dask, validation_curve
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, split_batch

#: Data-parallel LightGBM finds bin boundaries per worker and sums histograms across them, so its trees differ
#: slightly from one machine's; on 6,000 training rows the test AUCs differed by about 0.001.
AUC_TOLERANCE = 0.01
SETTINGS = TrainingSettings(max_trees_full=300, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def batch() -> tuple[BatchSplit, FeatureSchema]:
    frame = generate_day(StreamSpec(rows_per_day=10000), 0)
    schema = infer_schema(frame, DatasetSpec(label=LABEL), "day-0")
    clean = validate_batch(frame, schema, "day-0")[0]
    return split_batch(clean, LABEL, "day-0", "day-0"), schema


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1") as c,
        Client(c) as dask_client,
    ):
        yield dask_client


def test_dask_training_reaches_single_machine_auc_with_a_plain_booster(
    batch: tuple[BatchSplit, FeatureSchema], client: Client
) -> None:
    split, schema = batch
    single = full_retrain(split, schema, SETTINGS)
    result = full_retrain_on_dask(dd.from_pandas(split.train, npartitions=4), split.valid, schema, SETTINGS, client)

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
    train = dd.from_pandas(split.train, npartitions=2)
    with pytest.raises(TrainingError, match="validation rows: label 'churned' has a single class"):
        full_retrain_on_dask(train, one_class, schema, SETTINGS, client)
