"""Retraining a dataset batch on the cluster: the plan's ladder as ``lightgbm.dask`` can run it, each attempt metered
on the step's process and on every worker.

``lightgbm.dask`` can boost from scratch or from ``init_score``; it cannot refit a model's leaves or continue one
(``init_model``). So the ladder becomes: a warm start from the champion's raw scores where the plan starts with a
refit or a warm start, then a full retrain if the plan escalates to one. A warm start that fails on the cluster
falls back to a full retrain, and the outcome's reason says so. A first model with ``model_store.transfer_from`` set
trains from scratch (the transfer runs in one process only), and says so too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import lightgbm as lgb
import pandas as pd
from distributed import Client

from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.distributed.metering import metered_on_cluster
from green_pipeline.distributed.partitions import DatasetSplit, TrainingArrays, batch_seed, training_arrays
from green_pipeline.distributed.training import boost_on_dask
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.errors import TrainingError
from green_pipeline.records import DriftAssessment
from green_pipeline.store import files
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import QualityBar, Strategy, StrategyRules, choose_final, meets_bar, quality_bar
from green_pipeline.training.retraining import (
    Attempt,
    Retrained,
    RetrainingOutcome,
    plan_for,
    retrained,
    split_batches,
)
from green_pipeline.training.trainer import BatchSplit, TrainingSettings
from green_pipeline.training.tuning import TuningHistory

#: What the cluster runs for each strategy of a plan: refit and transfer have no data-parallel form here.
ON_DASK = {
    Strategy.REFIT: Strategy.WARM_START,
    Strategy.WARM_START: Strategy.WARM_START,
    Strategy.TRANSFER: Strategy.FULL,
    Strategy.FULL: Strategy.FULL,
}


@dataclass(frozen=True)
class ClusterBatch:
    """A dataset batch as the cluster trains on it: its held-out rows, and where its parts are read from."""

    dataset: DatasetBatch
    split: DatasetSplit
    storage_options: files.StorageOptions | None = None


def retrain_dataset(
    client: Client,
    batch: ClusterBatch,
    assessment: DriftAssessment,
    champion: DeployedModel | None,
    spec: DatasetSpec,
    thresholds: MonitoringThresholds,
    settings: TrainingSettings,
    energy: EnergySettings,
    pooled: Mapping[str, pd.DataFrame] | None = None,
) -> Retrained:
    """A challenger trained on the cluster on the batch's training rows (and the pooled batches' ones), judged on its
    held-out rows, with the strategies of the plan its drift and quality drop call for (``ON_DASK``). The champion's
    tuned parameters apply, as to every untuned in-process strategy; no study runs on the cluster."""
    name = assessment.batch
    history = TuningHistory.from_metadata(champion.metadata) if champion else None
    settings = history.best_params.applied_to(settings) if history else settings
    schema = champion.schema if champion else infer_schema(batch.split.train_sample, spec, name)
    split, extra_train = _with_pooled(batch.split, pooled or {}, schema.label, name)
    train_rows = batch.split.train_rows + (0 if extra_train is None else len(extra_train))

    def rows_from(start: lgb.Booster | None) -> TrainingArrays:
        champion_text = start.model_to_string() if start else None
        return training_arrays(
            client,
            batch.dataset,
            batch.split.holdout,
            batch_seed(name),
            schema,
            batch.storage_options,
            champion_text,
            extra_train,
        )

    rules = thresholds.rules or StrategyRules()
    plan = plan_for(
        assessment,
        train_rows + len(split.valid) + len(split.test),
        thresholds.quality_drop_auc,
        thresholds.always_retrain,
        rules,
    )
    ladder = tuple(dict.fromkeys(ON_DASK[s] for s in plan.ladder if champion or ON_DASK[s] is Strategy.FULL))
    champion_auc = auc(champion.booster, split.valid, schema) if champion else None
    bar = quality_bar(champion_auc, rules)
    attempts: list[Attempt] = []
    notes = [f"on Dask: {' then '.join(s.value for s in ladder)} (lightgbm.dask has no refit, transfer or init_model)"]
    for strategy in ladder or (Strategy.FULL,):
        start = champion.booster if strategy is Strategy.WARM_START and champion else None
        try:
            attempt = _attempt(client, rows_from(start), split.valid, schema, settings, energy, start, bar)
        except (lgb.basic.LightGBMError, TrainingError) as exc:
            if start is None:
                raise
            notes.append(f"the warm start from init_score failed ({exc}), so a full retrain ran instead")
            attempt = _attempt(client, rows_from(None), split.valid, schema, settings, energy, None, bar)
        attempts.append(attempt)
        if attempt.met_bar:
            break
    index, why = choose_final([(a.strategy, a.result.valid_auc) for a in attempts], bar)
    result = attempts[index].result
    outcome = RetrainingOutcome(
        result=result,
        attempts=tuple(attempts),
        plan=plan,
        bar=bar,
        champion_valid_auc=champion_auc,
        reason="; ".join([plan.reason, *notes, f"chosen: {why}"]),
        history=history.next_training() if history else None,
    )
    return retrained(name, outcome, schema, champion, pooled)


def held_out_split(split: DatasetSplit, pooled: Mapping[str, pd.DataFrame], label: str, batch: str) -> BatchSplit:
    """What the steps after training see of a dataset batch, in one process: its training sample, validation and
    test rows, with the pooled batches' split joined as ``training.retraining.split_batches`` joins them."""
    return _with_pooled(split, pooled, label, batch)[0]


def _with_pooled(
    split: DatasetSplit, pooled: Mapping[str, pd.DataFrame], label: str, batch: str
) -> tuple[BatchSplit, pd.DataFrame | None]:
    own = BatchSplit(split.train_sample, split.valid, split.test)
    if not pooled:
        return own, None
    joined = split_batches(pooled, label, batch)
    return (
        BatchSplit(
            *(pd.concat([getattr(own, p), getattr(joined, p)], ignore_index=True) for p in ("train", "valid", "test"))
        ),
        joined.train,
    )


def _attempt(
    client: Client,
    train: TrainingArrays,
    valid: pd.DataFrame,
    schema: FeatureSchema,
    settings: TrainingSettings,
    energy: EnergySettings,
    start: lgb.Booster | None,
    bar: QualityBar | None,
) -> Attempt:
    cpu_started = time.process_time()
    with measure_energy(energy) as measurement, metered_on_cluster(client, energy):
        result = boost_on_dask(train, valid, schema, settings, client, start)
    assert measurement.report is not None
    return Attempt(result, meets_bar(result.valid_auc, bar), measurement.report, time.process_time() - cpu_started)
