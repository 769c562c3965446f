"""Shared data and models for the unit tests: small generated batches, their schema, and trained boosters.

Training and Evidently are the slow parts, so models are trained once per session and only read by tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pytest

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, TrainResult, split_batch, train_model

ROWS_PER_DAY = 2000
#: Day 6 is after the covariate shift (day 5) and before the concept drift (day 11) of the default stream.
SHIFTED_REGIME_DAY = 6


@dataclass(frozen=True)
class TrainedModel:
    day: int
    batch_name: str
    split: BatchSplit
    result: TrainResult
    test_auc: float


@pytest.fixture(scope="session")
def stream_spec() -> StreamSpec:
    return StreamSpec(rows_per_day=ROWS_PER_DAY)


@pytest.fixture(scope="session")
def make_batch(stream_spec: StreamSpec) -> Callable[[int], pd.DataFrame]:
    """A fresh frame per call, so a test that edits its batch cannot leak into another."""
    return lambda day: generate_day(stream_spec, day)


@pytest.fixture
def batch(make_batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return make_batch(0)


@pytest.fixture(scope="session")
def schema(make_batch: Callable[[int], pd.DataFrame]) -> FeatureSchema:
    return infer_schema(make_batch(0), DatasetSpec(label=LABEL), "test")


@pytest.fixture(scope="session")
def make_clean_batch(make_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema) -> Callable[[int], pd.DataFrame]:
    return lambda day: validate_batch(make_batch(day), schema, f"day-{day}")[0]


@pytest.fixture(scope="session")
def training_settings() -> TrainingSettings:
    return TrainingSettings()


def _train_full(
    day: int, spec: StreamSpec, clean: Callable[[int], pd.DataFrame], schema: FeatureSchema, settings: TrainingSettings
) -> TrainedModel:
    name = spec.batch_name(day)
    split = split_batch(clean(day), schema.label, name, name)
    result = train_model(split, schema, Strategy.FULL, settings)
    return TrainedModel(day, name, split, result, auc(result.booster, split.test, schema))


@pytest.fixture(scope="session")
def day0_model(
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    schema: FeatureSchema,
    training_settings: TrainingSettings,
) -> TrainedModel:
    """Full retrain on the first, unshifted day."""
    return _train_full(0, stream_spec, make_clean_batch, schema, training_settings)


@pytest.fixture(scope="session")
def shifted_model(
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    schema: FeatureSchema,
    training_settings: TrainingSettings,
) -> TrainedModel:
    """Full retrain after the covariate shift: later batches differ from it only by the concept drift."""
    return _train_full(SHIFTED_REGIME_DAY, stream_spec, make_clean_batch, schema, training_settings)


@pytest.fixture(scope="session")
def deployed_shifted_model(
    tmp_path_factory: pytest.TempPathFactory,
    shifted_model: TrainedModel,
    schema: FeatureSchema,
    make_clean_batch: Callable[[int], pd.DataFrame],
) -> DeployedModel:
    """``shifted_model`` published, promoted and loaded back from a real store, as the pipeline serves it."""
    store = ModelStore(str(tmp_path_factory.mktemp("serving-store")))
    version = store.publish(
        shifted_model.result.booster.model_to_string(),
        schema,
        make_clean_batch(SHIFTED_REGIME_DAY),
        {"metrics": {"test_auc": shifted_model.test_auc}},
    )
    store.promote(version)
    return store.load()
