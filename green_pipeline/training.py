"""LightGBM training strategies: a full retrain from scratch, or a warm start from the deployed booster.

Both stop early on a validation split, so no tree is trained past the point where it stops helping:
a warm start typically adds a few dozen trees instead of growing hundreds from nothing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import lightgbm as lgb
import pandas as pd
from sklearn.model_selection import train_test_split

from green_pipeline.errors import TrainingError
from green_pipeline.policy import Strategy
from green_pipeline.schema import FeatureSchema


@dataclass(frozen=True)
class TrainingSettings:
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    max_trees_full: int = 500
    max_new_trees_warm_start: int = 150
    early_stopping_rounds: int = 25
    num_threads: int = 2
    seed: int = 0

    def params(self) -> dict[str, object]:
        return {
            "objective": "binary",
            "metric": "auc",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class BatchSplit:
    """Rows of one batch: ``train`` fits, ``valid`` stops early and selects, ``test`` judges promotion."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class TrainResult:
    booster: lgb.Booster
    strategy: Strategy
    trees: int
    new_trees: int
    train_rows: int
    valid_auc: float


def split_batch(frame: pd.DataFrame, label: str, batch_name: str, source: str) -> BatchSplit:
    """Deterministic stratified 60/20/20 split seeded by the batch name, so every step sees the same rows."""
    labels = frame[label]
    if labels.nunique() < 2:
        raise TrainingError(f"{source}: label {label!r} has a single class; a classifier cannot learn from it.")
    if labels.value_counts().min() < 5:
        raise TrainingError(f"{source}: fewer than 5 rows of the rarer class in {label!r}; too few to train and test.")
    seed = zlib.crc32(batch_name.encode())
    train, rest = train_test_split(frame, test_size=0.4, stratify=labels, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=rest[label], random_state=seed)
    return BatchSplit(train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True))


def train_model(
    split: BatchSplit,
    schema: FeatureSchema,
    strategy: Strategy,
    settings: TrainingSettings,
    champion: lgb.Booster | None = None,
) -> TrainResult:
    """Train with ``strategy``; a warm start continues boosting ``champion`` with ``init_model``."""
    if strategy is Strategy.WARM_START and champion is None:
        raise TrainingError("warm start needs a deployed model to start from; none was given.")
    train_set = lgb.Dataset(schema.encode(split.train), schema.labels(split.train), free_raw_data=False)
    valid_set = lgb.Dataset(schema.encode(split.valid), schema.labels(split.valid), reference=train_set)
    init_model = champion if strategy is Strategy.WARM_START else None
    start_trees = champion.num_trees() if init_model is not None else 0
    rounds = settings.max_new_trees_warm_start if init_model is not None else settings.max_trees_full
    booster = lgb.train(
        settings.params(),
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        init_model=init_model,
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return TrainResult(
        booster=trimmed,
        strategy=strategy,
        trees=trimmed.num_trees(),
        new_trees=trimmed.num_trees() - start_trees,
        train_rows=len(split.train),
        valid_auc=float(booster.best_score["valid"]["auc"]),
    )
