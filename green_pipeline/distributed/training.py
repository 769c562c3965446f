"""A full retrain on a Dask cluster (``lightgbm.dask``) when the training rows are a Dask DataFrame.

Data-parallel training over the cluster's workers, with the settings of ``training.full_retrain``, returning the
same ``TrainResult`` (a trimmed booster whose text the compression, store and scoring steps read unchanged).

``lightgbm.dask`` has no early stopping (each worker would judge its own slice of the validation rows and stop at
another round: LightGBM issues 3712 and 7009 report hangs), so every ``max_trees_full`` round is grown on the
cluster and the model is then cut where ``lightgbm.early_stopping`` with the same patience would have stopped on
the same validation rows. The trees kept are those an early-stopped training keeps; the rounds past that point
are spent (bounded by ``max_trees_full``). The validation rows are a pandas frame: a sample small enough for
one process, as they are in the in-process pipeline.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import dask.dataframe as dd
import lightgbm as lgb
import numpy as np
import pandas as pd
from distributed import Client
from lightgbm.dask import DaskLGBMClassifier
from sklearn.metrics import roc_auc_score

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import TrainingError
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import TrainingSettings, TrainResult

#: Set by lightgbm.dask from each worker's thread count; passing it only earns a warning.
_WORKER_MANAGED_PARAMS = ("num_threads",)


def full_retrain_on_dask(
    train: dd.DataFrame,
    valid: pd.DataFrame,
    schema: FeatureSchema,
    settings: TrainingSettings,
    client: Client | None = None,
) -> TrainResult:
    """A new model from scratch on ``train`` (partitions spread over the workers), early-stopped on ``valid``.

    ``client`` defaults to the current Dask client (``distributed.default_client()``).
    """
    _check_labels(valid, schema, "validation rows")
    params: dict[str, Any] = {k: v for k, v in settings.params().items() if k not in _WORKER_MANAGED_PARAMS}
    model = DaskLGBMClassifier(client=client, n_estimators=settings.max_trees_full, **params)
    features = train.map_partitions(schema.encode)
    with warnings.catch_warnings():
        # lightgbm.dask warns that its own default n_jobs is ignored (workers set their threads) on every fit.
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
        model.fit(features, train[schema.label].astype("int64"))
    grown = model.booster_
    curve = validation_curve(grown, valid, schema)
    best = early_stopping_round(curve.tolist(), settings.early_stopping_rounds)
    trimmed = lgb.Booster(model_str=grown.model_to_string(num_iteration=best))
    rows = int(train.shape[0].compute())
    return TrainResult(
        booster=trimmed,
        strategy=Strategy.FULL,
        trees=trimmed.num_trees(),
        new_trees=trimmed.num_trees(),
        train_rows=rows,
        valid_auc=float(curve[best - 1]),
    )


def validation_curve(booster: lgb.Booster, valid: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """AUC on ``valid`` after each boosting round, from one pass over the trees (raw scores add up tree by tree)."""
    features, labels = schema.encode(valid), schema.labels(valid)
    raw = np.zeros(len(valid))
    curve = np.empty(booster.current_iteration())
    for round_index in range(len(curve)):
        raw += booster.predict(features, start_iteration=round_index, num_iteration=1, raw_score=True)
        curve[round_index] = roc_auc_score(labels, raw)
    return curve


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
