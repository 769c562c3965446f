"""Feature selection as a compression technique: the model retrained on the fewest features that hold most of its gain.

A column the model barely splits on costs on every later batch all the same: it is read, validated and drift-tested.
Gain ranks the columns by what the model's splits bought with them; the smallest leading set whose shares add up to
``feature_gain_share`` is retrained once (the teacher's settings, early-stopped on the held-out rows) and kept only if
it stays within the compression AUC budget (``search``). A kept selection narrows the deployed schema, so the later
batches' ingestion reads only those columns and validation and the drift tests see only them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import lightgbm as lgb
import pandas as pd

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain

#: Gain shares add up to 1 up to float rounding: a prefix exactly at the threshold reaches it.
SHARE_SLACK = 1e-12
#: The settings a tuned teacher may differ in from the policy's: read from its model text, so a tuned model is
#: retrained with its tuned values (LightGBM writes every parameter into the text).
TEACHER_PARAMETERS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction")


@dataclass(frozen=True)
class FeatureSelection:
    """The features the compressed candidates use, every feature dropped since the lineage's first version, why.

    ``model_text`` is the confirming retrain when it was kept (the candidates are then built from it), else None.
    """

    schema: FeatureSchema
    dropped: tuple[str, ...]
    status: str
    model_text: str | None = None

    @property
    def kept(self) -> bool:
        return self.model_text is not None


def gain_prefix(importance: Mapping[str, float], gain_share: float) -> tuple[str, ...]:
    """The fewest features, by decreasing share of gain, whose shares add up to ``gain_share``; equal shares keep
    the model's column order, so the choice is reproducible."""
    ranked = sorted(importance, key=lambda name: -importance[name])
    kept: list[str] = []
    total = 0.0
    for name in ranked:
        kept.append(name)
        total += importance[name]
        if total >= gain_share - SHARE_SLACK:
            break
    return tuple(kept)


def teacher_settings(teacher: lgb.Booster, policy: TrainingSettings, num_threads: int) -> TrainingSettings:
    """The policy's rounds, patience and seed with the teacher's own learning rate, leaves, leaf size and feature
    fraction: the confirming retrain differs from the teacher in its columns only."""
    loaded = teacher.params
    own = {name: type(getattr(policy, name))(loaded[name]) for name in TEACHER_PARAMETERS if name in loaded}
    return dataclasses.replace(policy, num_threads=num_threads, **own)


def retrain_on_features(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: FeatureSchema, settings: TrainingSettings
) -> str:
    """A full retrain on ``schema``'s columns, early-stopped on ``holdout`` like the teacher on its validation rows."""
    return full_retrain(BatchSplit(train, holdout, holdout.iloc[:0]), schema, settings).booster.model_to_string()
