"""The gate on real batches and models: drift weighted by what the champion uses, quality judged by its interval,
small batches pooled, and the thresholds behind each decision in the drift step's metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd
import pytest

from green_pipeline.assets.monitoring import drift_metadata
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.drift.assessment import MonitoringThresholds, assess_batch, feature_importance
from green_pipeline.orchestration.metadata import DriftDecision
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.policy import GateHistory, Outcome, QualityDrop, Strategy, StrategyRules, Trigger
from green_pipeline.training.retraining import plan_for

#: A day of the champion's own regime (it was trained on day 6), and a day after the concept drift (day 11).
SAME_REGIME_DAY, CONCEPT_DRIFT_DAY = 7, 12
#: Columns the day-6 champion barely uses (each under an even share of its gain, together about 14 %).
UNIMPORTANT = ("region", "channel", "age", "data_usage_gb")


def _moved(frame: pd.DataFrame) -> pd.DataFrame:
    """The batch with every unimportant column shifted far from the champion's reference."""
    moved = frame.copy()
    moved["region"] = "north"
    moved["channel"] = "store"
    moved["age"] = moved["age"] + 30
    moved["data_usage_gb"] = moved["data_usage_gb"] * 4
    return moved


def test_the_champions_importance_is_its_share_of_gain(deployed_shifted_model: DeployedModel) -> None:
    importance = feature_importance(deployed_shifted_model.booster)

    assert set(importance) == set(deployed_shifted_model.schema.features)
    assert sum(importance.values()) == pytest.approx(1.0)
    assert all(importance[column] < 1 / len(importance) for column in UNIMPORTANT)


@pytest.mark.parametrize("labelled", [False, True])
def test_drift_in_unimportant_columns_does_not_open_the_gate(
    labelled: bool,
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    deployed_shifted_model: DeployedModel,
) -> None:
    """Four of eleven columns drift (plain share 0.36, past both thresholds below), but the champion barely uses
    them: the weighted share stays far below, so the gate stays shut, with or without labels."""
    frame = _moved(make_clean_batch(SAME_REGIME_DAY))
    if not labelled:
        frame = frame.drop(columns=[deployed_shifted_model.schema.label])
    thresholds = MonitoringThresholds(drift_share=0.3, rules=StrategyRules(severe_drift_share=0.3))

    assessment, _ = assess_batch(stream_spec.batch_name(SAME_REGIME_DAY), frame, deployed_shifted_model, thresholds)

    drift = assessment.drift
    assert {c.column for c in drift.columns if c.drifted} >= set(UNIMPORTANT)
    assert drift.drifted_share is not None and drift.drifted_share >= 0.3
    assert drift.weighted_share is not None and drift.weighted_share < 0.2
    assert not assessment.decision.retrain, assessment.decision.reason
    assert (assessment.champion_auc is not None) is labelled
    metadata = drift_metadata(assessment, thresholds)
    assert metadata["weighted_drifted_share"] == drift.weighted_share and metadata["drift_importance_weighted"]
    assert metadata["drifted_share"] == drift.drifted_share and metadata["drift_gate_threshold"] == 0.3


def test_the_same_drift_in_columns_the_champion_uses_opens_the_gate(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    """Day 1 precedes the covariate shift the champion was trained after: its price and usage columns drift."""
    assessment, _ = assess_batch(
        stream_spec.batch_name(1), make_clean_batch(1), deployed_shifted_model, MonitoringThresholds()
    )

    assert assessment.drift.weighted_share is not None and assessment.drift.weighted_share >= 0.5
    assert assessment.decision.retrain and assessment.decision.trigger in (Trigger.DRIFT, Trigger.QUALITY_DROP)
    assert "policy.severe_drift_share" in assessment.decision.reason


def test_a_quality_drop_on_too_few_rows_does_not_fire_and_on_enough_rows_does(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    """After the concept drift the champion's AUC falls past the threshold on a small sample too, but on 120 rows
    its interval still reaches the deployed AUC minus the threshold: noise cannot be told from a drop."""
    frame = make_clean_batch(CONCEPT_DRIFT_DAY)
    # Drift never opens the gate here (a severe level of 1.0): the decision is the quality trigger's alone.
    rules = StrategyRules(severe_drift_share=1.0)
    thresholds = MonitoringThresholds(quality_drop_auc=0.05, min_rows_for_decision=100, rules=rules)
    name = stream_spec.batch_name(CONCEPT_DRIFT_DAY)

    small, _ = assess_batch(name, frame.sample(120, random_state=3), deployed_shifted_model, thresholds)
    full, _ = assess_batch(name, frame, deployed_shifted_model, thresholds)

    assert small.champion_auc_interval is not None and small.champion_deployed_auc is not None
    assert small.champion_deployed_auc - small.champion_auc_interval.estimate > 0.05
    assert small.champion_auc_interval.upper >= small.champion_deployed_auc - 0.05
    assert not small.decision.retrain and "no clear AUC drop" in small.decision.reason
    assert full.decision.retrain and full.decision.trigger is Trigger.QUALITY_DROP
    assert full.champion_auc_interval is not None and full.champion_auc_interval.upper < 0.8


def test_an_interval_reaching_the_threshold_holds_the_trigger_back() -> None:
    wide = QualityDrop(deployed_auc=0.85, batch_auc=0.78, threshold=0.05, batch_upper=0.83, confidence=0.95)
    narrow = QualityDrop(deployed_auc=0.85, batch_auc=0.78, threshold=0.05, batch_upper=0.795, confidence=0.95)

    assert wide.drop > wide.threshold and not wide.passes_threshold
    assert narrow.passes_threshold
    assert "upper bound 0.8300 at 95%" in wide.describe()


def test_a_small_batch_is_pooled_and_judged_with_the_next(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    thresholds = MonitoringThresholds(min_rows_for_decision=1000)
    first, second = make_clean_batch(CONCEPT_DRIFT_DAY).iloc[:600], make_clean_batch(CONCEPT_DRIFT_DAY + 1).iloc[:600]
    first_name, second_name = stream_spec.batch_name(CONCEPT_DRIFT_DAY), stream_spec.batch_name(CONCEPT_DRIFT_DAY + 1)

    pooled, html = assess_batch(first_name, first, deployed_shifted_model, thresholds)
    judged, _ = assess_batch(
        second_name,
        second,
        deployed_shifted_model,
        thresholds,
        history=GateHistory(pooled_batches=(first_name,)),
        pooled={first_name: first},
    )

    assert pooled.decision.outcome is Outcome.POOLED and not pooled.decision.retrain and html is None
    assert (
        "600 labelled rows" in pooled.decision.reason and "policy.min_rows_for_decision 1000" in pooled.decision.reason
    )
    assert DriftDecision.of(pooled).outcome == "pooled"
    assert judged.decision.outcome is Outcome.RETRAIN and judged.decision.trigger is Trigger.QUALITY_DROP
    assert judged.labelled_rows == judged.drift.current_rows == 1200
    assert judged.pooled_batches == (first_name,) and judged.pooled_rows == 600
    record = DriftDecision.of(judged)
    assert record.pooled_batches == [first_name] and record.pooled_rows == 600


def test_a_first_batch_trains_whatever_its_size(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame]
) -> None:
    """Nothing serves until a first model is trained, so it is never pooled."""
    assessment, _ = assess_batch(
        stream_spec.batch_name(0), make_clean_batch(0).iloc[:300], None, MonitoringThresholds()
    )

    assert assessment.decision.retrain and assessment.decision.trigger is Trigger.NO_CHAMPION


def test_a_champion_that_learned_from_too_few_rows_is_retrained_once_enough_rows_are_judged(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    """A first model of 300 rows served only because nothing else could: the first decision on 1,200 rows of its own
    regime (no drift, no quality drop) retrains it from scratch; the same model of 20,000 rows keeps serving, and a
    retrain wasted since the last promotion leaves the stopgap serving."""
    stopgap = dataclasses.replace(deployed_shifted_model, reference=deployed_shifted_model.reference.iloc[:300])
    frame, name = make_clean_batch(SAME_REGIME_DAY).iloc[:1200], stream_spec.batch_name(SAME_REGIME_DAY)
    thresholds = MonitoringThresholds()

    provisional, _ = assess_batch(name, frame, stopgap, thresholds)
    settled, _ = assess_batch(name, frame, deployed_shifted_model, thresholds)
    after_waste, _ = assess_batch(name, frame, stopgap, thresholds, history=GateHistory(wasted_retrains=1))

    assert provisional.decision.retrain and provisional.decision.trigger is Trigger.PROVISIONAL
    assert "300 labelled rows < policy.min_rows_for_decision 1000" in provisional.decision.reason
    plan = plan_for(provisional, 1200, thresholds.quality_drop_auc, False, thresholds.rules)
    assert plan.ladder == (Strategy.FULL,) and plan.reference_fraction == thresholds.rules.reference_fraction
    assert not settled.decision.retrain, settled.decision.reason
    assert not after_waste.decision.retrain and after_waste.decision.trigger is None
