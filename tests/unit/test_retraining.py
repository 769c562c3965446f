"""Escalation on real models with real energy measurement: what is tried, what is kept, and what is recorded."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.drift.detection import DriftResult, no_reference
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.records import DriftAssessment
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import (
    ESCALATION,
    RetrainDecision,
    RetrainPlan,
    Strategy,
    StrategyRules,
    plan_retraining,
)
from green_pipeline.training.retraining import RetrainingOutcome, plan_for, retrain
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, split_batch

#: After the concept drift (day 11) the day-6 champion loses ~0.1 AUC; refit recovers ~0.06 of it,
#: warm start ~0.07 and a full retrain ~0.1 on this batch's validation rows.
CONCEPT_DRIFT_DAY = 12
SETTINGS = TrainingSettings(num_threads=1)
ENERGY = EnergySettings()
FROM_REFIT = RetrainPlan(ESCALATION, 0.0, "escalating from refit")


@pytest.fixture(scope="module")
def concept_split(stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame]) -> BatchSplit:
    name = stream_spec.batch_name(CONCEPT_DRIFT_DAY)
    return split_batch(make_clean_batch(CONCEPT_DRIFT_DAY), "churned", name, name)


@pytest.fixture(scope="module")
def escalated(
    concept_split: BatchSplit, schema: FeatureSchema, deployed_shifted_model: DeployedModel
) -> RetrainingOutcome:
    """A bar (0.08 over the champion) that refit and warm start cannot meet on this batch but a full retrain can."""
    rules = StrategyRules(min_gain_auc=0.08)
    return retrain(concept_split, schema, deployed_shifted_model, FROM_REFIT, rules, SETTINGS, ENERGY)


def test_cheaper_strategies_that_miss_the_bar_escalate_to_the_next(
    escalated: RetrainingOutcome, concept_split: BatchSplit, deployed_shifted_model: DeployedModel
) -> None:
    champion_auc = auc(deployed_shifted_model.booster, concept_split.valid, deployed_shifted_model.schema)

    assert escalated.strategies_tried == (Strategy.REFIT, Strategy.WARM_START, Strategy.FULL)
    assert [a.met_bar for a in escalated.attempts] == [False, False, True]
    assert escalated.result.strategy is Strategy.FULL
    assert escalated.champion_valid_auc == pytest.approx(champion_auc)
    assert escalated.bar is not None and escalated.bar.auc == pytest.approx(champion_auc + 0.08)
    assert escalated.reason.endswith("after refit, warm_start fell short")


def test_every_attempt_records_its_own_measured_energy(escalated: RetrainingOutcome) -> None:
    for attempt in escalated.attempts:
        assert attempt.energy.has_figures, attempt.energy.unmeasured_reason
        assert attempt.energy.energy_kwh is not None and attempt.energy.energy_kwh > 0
        assert attempt.cpu_s > 0
    refit, warm, full = escalated.attempts
    assert refit.result.new_trees == 0 < warm.result.new_trees
    assert refit.result.valid_auc < warm.result.valid_auc < full.result.valid_auc


def test_metadata_has_numbers_per_attempt_and_a_markdown_table(escalated: RetrainingOutcome) -> None:
    metadata = escalated.metadata()

    assert metadata["strategies_tried"] == "refit, warm_start, full_retrain"
    assert metadata["attempts"] == 3
    for attempt in escalated.attempts:
        key = f"attempt_{attempt.strategy.value}"
        assert metadata[f"{key}_energy_kwh"] == attempt.energy.energy_kwh
        assert metadata[f"{key}_valid_auc"] == attempt.result.valid_auc
    table = escalated.attempts_table()
    assert table.splitlines()[0].startswith("| strategy | valid AUC | met bar |")
    assert "| refit |" in table and "| no |" in table and "| full_retrain |" in table
    assert "Quality bar: " in table


def test_the_first_attempt_meeting_the_bar_stops_the_escalation(
    concept_split: BatchSplit, schema: FeatureSchema, deployed_shifted_model: DeployedModel
) -> None:
    outcome = retrain(concept_split, schema, deployed_shifted_model, FROM_REFIT, StrategyRules(), SETTINGS, ENERGY)

    assert outcome.strategies_tried == (Strategy.REFIT,)
    assert outcome.result.strategy is Strategy.REFIT and outcome.attempts[0].met_bar


def test_when_nothing_meets_the_bar_the_best_attempt_is_handed_on(
    concept_split: BatchSplit, schema: FeatureSchema, deployed_shifted_model: DeployedModel
) -> None:
    plan = RetrainPlan((Strategy.REFIT, Strategy.WARM_START), 0.0, "refit, then warm start")

    outcome = retrain(
        concept_split, schema, deployed_shifted_model, plan, StrategyRules(min_gain_auc=0.5), SETTINGS, ENERGY
    )

    assert outcome.strategies_tried == (Strategy.REFIT, Strategy.WARM_START)
    assert outcome.result is outcome.attempts[1].result
    assert "no strategy reached the bar" in outcome.reason


def test_the_always_retrain_baseline_is_a_full_retrain_on_the_warm_start_window(
    concept_split: BatchSplit, schema: FeatureSchema, deployed_shifted_model: DeployedModel
) -> None:
    rules = StrategyRules()
    plan = plan_retraining(_drift(0.0), None, 2000, True, True, rules)

    outcome = retrain(concept_split, schema, deployed_shifted_model, plan, rules, SETTINGS, ENERGY)

    assert outcome.strategies_tried == (Strategy.FULL,)
    assert outcome.result.extra_rows == round(rules.reference_fraction * len(concept_split.train))
    assert outcome.result.new_trees == outcome.result.trees


def test_the_first_model_has_no_bar_and_is_trained_from_scratch(
    make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema
) -> None:
    split = split_batch(make_clean_batch(0), "churned", "batch-0.parquet", "batch-0.parquet")
    plan = plan_retraining(no_reference(2000, 0.3), None, 2000, False, False, StrategyRules())

    outcome = retrain(split, schema, None, plan, StrategyRules(), SETTINGS, EnergySettings(enabled=False))

    assert outcome.strategies_tried == (Strategy.FULL,)
    assert outcome.bar is None and outcome.champion_valid_auc is None
    assert "no model is deployed yet" in outcome.reason
    metadata = outcome.metadata()
    assert "attempt_full_retrain_energy_kwh" not in metadata and "quality_bar_auc" not in metadata
    assert "| unmeasured |" in outcome.attempts_table()


def test_the_plan_of_a_monitored_batch_uses_its_quality_drop() -> None:
    assessment = DriftAssessment(
        batch="batch-x.parquet",
        drift=_drift(0.1),
        decision=RetrainDecision(True, Strategy.WARM_START, "AUC fell"),
        champion_version="v0001",
        champion_auc=0.74,
        champion_deployed_auc=0.84,
        report_url=None,
    )

    concept = plan_for(assessment, 2000, quality_drop_threshold=0.05, always_retrain=False, rules=StrategyRules())
    tolerant = plan_for(assessment, 2000, quality_drop_threshold=0.2, always_retrain=False, rules=StrategyRules())

    assert concept.ladder == (Strategy.WARM_START, Strategy.FULL) and concept.reference_fraction == 0.0
    assert tolerant.ladder == ESCALATION


def _drift(share: float) -> DriftResult:
    return DriftResult(share, round(share * 10), 10, 0.3, 2000, 2000)
