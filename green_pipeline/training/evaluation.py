"""Model quality on labelled rows: the one AUC computation every step and the demo share."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import TrainingError


def auc(booster: lgb.Booster, frame: pd.DataFrame, schema: FeatureSchema, num_iteration: int | None = None) -> float:
    """ROC AUC of ``booster`` on ``frame``'s label; needs both classes present."""
    scores = np.asarray(booster.predict(schema.encode(frame), num_iteration=num_iteration))
    return scores_auc(frame, scores, schema)


def scores_auc(frame: pd.DataFrame, scores: np.ndarray, schema: FeatureSchema) -> float:
    """ROC AUC of ``scores`` (one per row of ``frame``, in order) on ``frame``'s label; needs both classes present."""
    labels = schema.labels(frame)
    if labels.nunique() < 2:
        raise TrainingError(f"AUC needs both classes of {schema.label!r}; these {len(frame)} rows have one.")
    return float(roc_auc_score(labels, scores))
