"""Training on a Dask cluster (``lightgbm.dask``) when the training rows are a Dask DataFrame: a full retrain, or a
warm start from the champion's raw scores.

Data-parallel training over the cluster's workers, with the settings of the in-process strategies, returning the
same ``TrainResult`` (a plain booster whose text the compression, store and scoring steps read unchanged).

``lightgbm.dask`` supports neither early stopping (each worker would judge its own slice of the validation rows
and stop at another round: LightGBM issues 3712 and 7009 report hangs) nor ``init_model``. So the capped number of
rounds is grown on the cluster and the model is then cut where ``lightgbm.early_stopping`` with the same patience
would have stopped on the same validation rows: the trees kept are those an early-stopped training keeps, and the
rounds past that point are spent (bounded by the cap). A warm start boosts from the champion's raw scores
(``init_score``) and stacks the new trees on the champion's. The validation rows are a pandas frame: the held-out
rows, small enough for one process (``distributed.partitions.MAX_HOLDOUT_ROWS``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from distributed import Client
from lightgbm.dask import DaskLGBMClassifier

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.distributed.partitions import TrainingArrays, categorical_indices
from green_pipeline.errors import TrainingError
from green_pipeline.training.policy import Strategy
from green_pipeline.training.stacking import stack_models
from green_pipeline.training.trainer import TrainingSettings, TrainResult

#: Set by lightgbm.dask from each worker's thread count; passing it only earns a warning.
_WORKER_MANAGED_PARAMS = ("num_threads",)
#: Validation rows on which a stacked warm start is checked against the sum of its two models.
_STACK_CHECK_ROWS = 256


def full_retrain_on_dask(
    train: TrainingArrays, valid: pd.DataFrame, schema: FeatureSchema, settings: TrainingSettings, client: Client
) -> TrainResult:
    """A new model from scratch on ``train`` (chunks spread over the workers): ``max_trees_full`` rounds at most,
    cut where early stopping on ``valid`` would have stopped."""
    return boost_on_dask(train, valid, schema, settings, client, champion=None)


def boost_on_dask(
    train: TrainingArrays,
    valid: pd.DataFrame,
    schema: FeatureSchema,
    settings: TrainingSettings,
    client: Client,
    champion: lgb.Booster | None,
) -> TrainResult:
    """Boost on the cluster: from scratch, or, with ``champion``, from its raw scores as ``init_score`` (``train``
    carries them, computed on the workers), the new trees then stacked on the champion's (``stack_models``): the
    warm start ``init_model`` would have grown, which ``lightgbm.dask`` does not support.

    The features reach LightGBM as float32 matrices with category codes (``feature_matrix``); the model gets the
    schema's categories (``pandas_categorical``), so it scores pandas frames as a model trained on them does."""
    _check_labels(valid, schema, "validation rows")
    if champion is not None and train.init_scores is None:
        raise TrainingError("a warm start on Dask needs the champion's raw scores of the training rows.")
    rounds = settings.max_new_trees_warm_start if champion else settings.max_trees_full
    patience = settings.early_stopping_rounds_warm_start if champion else settings.early_stopping_rounds
    params: dict[str, Any] = {k: v for k, v in settings.params().items() if k not in _WORKER_MANAGED_PARAMS}
    model = DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    # lightgbm.dask waits on the default client whatever client it is given: make ours the current one.
    with warnings.catch_warnings(), client.as_current():
        # lightgbm.dask warns that its own default n_jobs is ignored (workers set their threads) on every fit.
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
        model.fit(
            train.features,
            train.labels,
            init_score=train.init_scores if champion else None,
            feature_name=list(schema.features),
            categorical_feature=categorical_indices(schema),
        )
    grown = model.booster_
    grown.pandas_categorical = [list(values) for values in schema.categories.values()]
    encoded_valid = schema.encode(valid)
    start = np.asarray(champion.predict(encoded_valid, raw_score=True), dtype="float64") if champion else None
    curve = validation_curve(grown, valid, schema, start)
    best = early_stopping_round(curve.tolist(), patience)
    trimmed = lgb.Booster(model_str=grown.model_to_string(num_iteration=best))
    booster = stack_models(champion, trimmed, encoded_valid.head(_STACK_CHECK_ROWS)) if champion else trimmed
    return TrainResult(
        booster=booster,
        strategy=Strategy.WARM_START if champion else Strategy.FULL,
        trees=booster.num_trees(),
        new_trees=trimmed.num_trees(),
        train_rows=train.rows,
        valid_auc=float(curve[best - 1]),
    )


def validation_curve(
    booster: lgb.Booster, valid: pd.DataFrame, schema: FeatureSchema, start: np.ndarray | None = None
) -> np.ndarray:
    """AUC on ``valid`` after each boosting round, boosting from the raw scores ``start`` (a warm start's champion) or
    from zero. One prediction call gives every row's leaf in every tree; the raw scores then add up tree by tree
    (one tree per round, as ``objective=binary`` grows), and each round re-sorts the previous round's order, nearly
    sorted already (a stable sort finishes such runs in about linear time)."""
    # One row of leaves per tree: each round reads a contiguous row.
    leaves = np.ascontiguousarray(np.asarray(booster.predict(schema.encode(valid), pred_leaf=True), dtype=np.int64).T)
    positives = schema.labels(valid).to_numpy() == 1
    raw = np.zeros(len(valid)) if start is None else np.asarray(start, dtype="float64").copy()
    order = np.argsort(raw, kind="stable")
    curve = np.empty(len(leaves))
    for tree, reached in enumerate(leaves):
        values = np.array([booster.get_leaf_output(tree, leaf) for leaf in range(int(reached.max()) + 1)])
        raw += values[reached]
        order = order[np.argsort(raw[order], kind="stable")]
        curve[tree] = sorted_auc(positives[order], raw[order])
    return curve


def sorted_auc(positives: np.ndarray, scores: np.ndarray) -> float:
    """The ROC AUC of ``scores`` sorted in ascending order, ``positives`` in the same order: each positive counts
    the negatives below it, and half of those tied with it."""
    starts_value = np.empty(len(scores), dtype=bool)
    starts_value[:1] = True
    np.not_equal(scores[1:], scores[:-1], out=starts_value[1:])
    value = np.cumsum(starts_value) - 1
    positive_per_value = np.bincount(value, weights=positives)
    negative_per_value = np.bincount(value) - positive_per_value
    negatives_below = np.cumsum(negative_per_value) - negative_per_value
    pairs = float(positives.sum()) * float(len(positives) - positives.sum())
    return float((positive_per_value * (negatives_below + 0.5 * negative_per_value)).sum() / pairs)


def early_stopping_round(curve: Sequence[float], patience: int) -> int:
    """The number of rounds ``lightgbm.early_stopping(patience)`` keeps for this validation curve (higher is better):
    the first best round, unless ``patience`` rounds without improvement came before a later one."""
    if len(curve) == 0:
        raise TrainingError("the Dask training grew no tree; check max_trees_full and the training rows.")
    best, best_score = 0, -math.inf
    for round_index, score in enumerate(curve):
        if score > best_score:
            best, best_score = round_index, score
        elif round_index - best >= patience:
            break
    return best + 1


def _check_labels(frame: pd.DataFrame, schema: FeatureSchema, what: str) -> None:
    if schema.labels(frame).nunique() < 2:
        raise TrainingError(f"{what}: label {schema.label!r} has a single class; early stopping needs both.")
