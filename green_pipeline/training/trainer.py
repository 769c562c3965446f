"""LightGBM retraining strategies, cheapest first: refit, warm start, transfer (fine-tuning), full retrain.

Each is a pure function of a batch split and settings that returns a ``TrainResult``. Which one runs is
the policy's call (``policy.py``); running them in turn with their energy measured is ``retraining.py``'s.
Boosting strategies stop early on the validation rows, so no tree is grown past the point where it helps.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import InvalidConfigError, TrainingError
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.stacking import stack_models

#: LightGBM threads of each step that trains or predicts: the published figures were measured with 2, deploy/k8s
#: gives the training and compression steps 2 CPUs, and up to 4 runs may share one machine.
NUM_THREADS = 2
#: Rows on which a stacked warm start is checked against the sum of its two models (``stacking.stack_models``).
STACK_CHECK_ROWS = 256


@dataclass(frozen=True)
class TrainingSettings:
    """LightGBM settings of every strategy; ``RetrainPolicy`` takes its defaults from here."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    #: Share of the features each tree may split on (LightGBM's default, 1.0: all); tuning may lower it.
    feature_fraction: float = 1.0
    max_trees_full: int = 500
    max_new_trees_warm_start: int = 150
    early_stopping_rounds: int = 40
    early_stopping_rounds_warm_start: int = 10
    refit_decay_rate: float = 0.5
    num_threads: int = NUM_THREADS
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.refit_decay_rate < 1.0:
            raise InvalidConfigError(f"policy.refit_decay_rate {self.refit_decay_rate} must be in [0, 1).")
        if not 0.0 < self.feature_fraction <= 1.0:
            raise InvalidConfigError(f"policy.feature_fraction {self.feature_fraction} must be in (0, 1].")

    def params(self) -> dict[str, object]:
        return {
            "objective": "binary",
            "metric": "auc",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "num_threads": self.num_threads,
            "seed": self.seed,
            # Reproducible whatever the machine's load: LightGBM otherwise picks row- or column-wise histograms
            # by timing both, so a busy machine can train another model from the same rows.
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class BatchSplit:
    """Rows of one batch: ``train`` fits, ``valid`` stops early and selects, ``test`` judges promotion."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class InitScores:
    """The champion's raw scores of the rows a warm start trains on (its train rows, then the extra ones) and
    validates on, looked up where the drift step computed them (``serving.scoring.ChampionScores``)."""

    train: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class TrainResult:
    """A trained booster; ``train_rows`` counts every row it learned from, ``extra_rows`` those not from the batch."""

    booster: lgb.Booster
    strategy: Strategy
    trees: int
    new_trees: int
    train_rows: int
    valid_auc: float
    extra_rows: int = 0


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


def reference_sample(reference: pd.DataFrame, rows: int, seed_name: str) -> pd.DataFrame:
    """Up to ``rows`` rows of the champion's training data, seeded by name, to keep what it learned alive."""
    if rows <= 0 or reference.empty:
        return reference.iloc[:0]
    return reference.sample(min(rows, len(reference)), random_state=zlib.crc32(seed_name.encode()))


def refit(champion: lgb.Booster, split: BatchSplit, schema: FeatureSchema, settings: TrainingSettings) -> TrainResult:
    """Keep the champion's trees and split points and re-estimate every leaf value on the new rows.

    The cheapest adaptation (one pass, no tree grown); it suffices when a shift moves rows between existing
    leaves. ``refit_decay_rate`` is the weight of the old leaf values.
    """
    booster = champion.refit(
        schema.encode(split.train),
        schema.labels(split.train),
        decay_rate=settings.refit_decay_rate,
        num_threads=settings.num_threads,
    )
    return TrainResult(
        booster=booster,
        strategy=Strategy.REFIT,
        trees=booster.num_trees(),
        new_trees=0,
        train_rows=len(split.train),
        valid_auc=auc(booster, split.valid, schema),
    )


def warm_start(
    champion: lgb.Booster,
    split: BatchSplit,
    schema: FeatureSchema,
    settings: TrainingSettings,
    extra_rows: pd.DataFrame | None = None,
    init_scores: InitScores | None = None,
) -> TrainResult:
    """Continue boosting the champion on the new rows (plus ``extra_rows``, a sample of its reference data).

    Only the residual error is learned, so it needs few trees and a short early-stopping patience. With
    ``init_scores`` the champion's scores are not computed again: the new trees boost from them and are stacked on
    the champion's (``training.stacking``), the model LightGBM's ``init_model`` would have grown.
    """
    return _boost(
        split,
        schema,
        settings,
        Strategy.WARM_START,
        init_model=champion,
        extra_rows=extra_rows,
        rounds=settings.max_new_trees_warm_start,
        patience=settings.early_stopping_rounds_warm_start,
        init_scores=init_scores,
    )


def transfer(base: lgb.Booster, split: BatchSplit, schema: FeatureSchema, settings: TrainingSettings) -> TrainResult:
    """Fine-tune a model of a source domain on a (small) target batch: boosting from it, target rows only.

    What the source taught about shared structure starts the model; the target's rows correct the rest.
    """
    return _boost(
        split,
        schema,
        settings,
        Strategy.TRANSFER,
        init_model=base,
        extra_rows=None,
        rounds=settings.max_trees_full,
        patience=settings.early_stopping_rounds,
    )


def full_retrain(
    split: BatchSplit,
    schema: FeatureSchema,
    settings: TrainingSettings,
    extra_rows: pd.DataFrame | None = None,
    callbacks: Sequence[Callable[[lgb.callback.CallbackEnv], None]] = (),
) -> TrainResult:
    """A new model from scratch on the new rows (plus ``extra_rows``), with early stopping.

    ``callbacks`` see every round's validation AUC: a tuning trial's pruning callback stops it there
    (``training.study``)."""
    return _boost(
        split,
        schema,
        settings,
        Strategy.FULL,
        init_model=None,
        extra_rows=extra_rows,
        rounds=settings.max_trees_full,
        patience=settings.early_stopping_rounds,
        callbacks=callbacks,
    )


def train_model(
    split: BatchSplit,
    schema: FeatureSchema,
    strategy: Strategy,
    settings: TrainingSettings,
    champion: lgb.Booster | None = None,
    extra_rows: pd.DataFrame | None = None,
    init_scores: InitScores | None = None,
) -> TrainResult:
    """Run ``strategy``; every one but a full retrain starts from ``champion`` (for transfer: the source model).
    A warm start boosts from ``init_scores`` when given (``warm_start``)."""
    if strategy is Strategy.FULL:
        return full_retrain(split, schema, settings, extra_rows)
    if champion is None:
        raise TrainingError(f"{strategy.value.replace('_', ' ')} needs a deployed model to start from; none was given.")
    if strategy is Strategy.REFIT:
        return refit(champion, split, schema, settings)
    if strategy is Strategy.TRANSFER:
        return transfer(champion, split, schema, settings)
    return warm_start(champion, split, schema, settings, extra_rows, init_scores)


def _boost(
    split: BatchSplit,
    schema: FeatureSchema,
    settings: TrainingSettings,
    strategy: Strategy,
    init_model: lgb.Booster | None,
    extra_rows: pd.DataFrame | None,
    rounds: int,
    patience: int,
    init_scores: InitScores | None = None,
    callbacks: Sequence[Callable[[lgb.callback.CallbackEnv], None]] = (),
) -> TrainResult:
    train = (
        split.train
        if extra_rows is None or extra_rows.empty
        else pd.concat([split.train, extra_rows], ignore_index=True)
    )
    stacked_on = init_model if init_scores is not None else None
    features = schema.encode(train)
    train_set = lgb.Dataset(
        features, schema.labels(train), init_score=init_scores.train if init_scores else None, free_raw_data=False
    )
    valid_set = lgb.Dataset(
        schema.encode(split.valid),
        schema.labels(split.valid),
        init_score=init_scores.valid if init_scores else None,
        reference=train_set,
    )
    booster = lgb.train(
        settings.params(),
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        init_model=None if stacked_on is not None else init_model,
        callbacks=[lgb.early_stopping(patience, verbose=False), *callbacks],
    )
    best = booster.best_iteration or booster.current_iteration()
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    if stacked_on is not None:
        trimmed = stack_models(stacked_on, trimmed, features.head(STACK_CHECK_ROWS))
    start_trees = init_model.num_trees() if init_model is not None else 0
    return TrainResult(
        booster=trimmed,
        strategy=strategy,
        trees=trimmed.num_trees(),
        new_trees=trimmed.num_trees() - start_trees,
        train_rows=len(train),
        valid_auc=float(booster.best_score["valid"]["auc"]),
        extra_rows=len(train) - len(split.train),
    )
