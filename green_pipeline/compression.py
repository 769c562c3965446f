"""Model compression measured on held-out rows: the smallest prefix of trees within an AUC budget.

Boosting front-loads what it learns, so the last trees often add little: dropping them shrinks the
model file and the cost of every prediction proportionally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.evaluation import auc
from green_pipeline.schema import FeatureSchema

PREFIX_CANDIDATES = 20


@dataclass(frozen=True)
class CompressionResult:
    booster: lgb.Booster
    technique: str
    trees_before: int
    trees_after: int
    auc_before: float
    auc_after: float
    size_bytes_before: int
    size_bytes_after: int

    @property
    def size_ratio(self) -> float:
        return self.size_bytes_after / self.size_bytes_before


def prune_tree_prefix(
    booster: lgb.Booster, holdout: pd.DataFrame, schema: FeatureSchema, auc_tolerance: float
) -> CompressionResult:
    """Keep the fewest leading trees whose AUC on ``holdout`` is within ``auc_tolerance`` of all trees."""
    total = booster.num_trees()
    full_auc = auc(booster, holdout, schema)
    candidates = sorted({max(1, math.ceil(total * f)) for f in np.linspace(0.05, 1.0, PREFIX_CANDIDATES)})
    kept, kept_auc = total, full_auc
    for trees in candidates:
        candidate_auc = auc(booster, holdout, schema, num_iteration=trees)
        if candidate_auc >= full_auc - auc_tolerance:
            kept, kept_auc = trees, candidate_auc
            break
    pruned = lgb.Booster(model_str=booster.model_to_string(num_iteration=kept))
    return CompressionResult(
        booster=pruned,
        technique="tree_prefix_pruning",
        trees_before=total,
        trees_after=kept,
        auc_before=full_auc,
        auc_after=kept_auc,
        size_bytes_before=len(booster.model_to_string().encode()),
        size_bytes_after=len(pruned.model_to_string().encode()),
    )
