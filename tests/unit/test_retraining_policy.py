"""The policy's choice of strategy, its quality bar and its final choice, as plain functions."""

from __future__ import annotations

import pytest

from green_pipeline.drift.detection import ColumnDrift, DriftResult, no_reference
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.resources import RetrainPolicy
from green_pipeline.training.policy import (
    ESCALATION,
    QualityDrop,
    Strategy,
    StrategyRules,
    choose_final,
    decide_retraining,
    plan_retraining,
    quality_bar,
)

RULES = StrategyRules()
ROWS = 20000


def drift(share: float, *columns: ColumnDrift) -> DriftResult:
    return DriftResult(share, round(share * 10), 10, 0.3, 20000, ROWS, columns)


def column(name: str, score: float, drifted: bool = True) -> ColumnDrift:
    """A Wasserstein-distance verdict: severity is the score over the 0.1 threshold."""
    return ColumnDrift(name, "wasserstein_distance_norm", score, 0.1, drifted)


def no_drop() -> QualityDrop:
    return QualityDrop(deployed_auc=0.84, batch_auc=0.835, threshold=0.05)


def test_moderate_drift_tries_refit_first_then_escalates() -> None:
    plan = plan_retraining(drift(0.36, column("monthly_charges", 0.2)), no_drop(), ROWS, True, False, RULES)

    assert plan.ladder == ESCALATION == (Strategy.REFIT, Strategy.WARM_START, Strategy.FULL)
    assert plan.reference_fraction == RULES.reference_fraction
    assert "refit first" in plan.reason


def test_a_severe_drifted_share_skips_refit() -> None:
    plan = plan_retraining(drift(0.55), no_drop(), ROWS, True, False, RULES)

    assert plan.ladder == (Strategy.WARM_START, Strategy.FULL)
    assert "drifted share 0.55 >= policy.severe_drift_share 0.50" in plan.reason


def test_one_column_far_past_its_threshold_skips_refit_and_is_named() -> None:
    columns = (column("support_calls", 0.2), column("monthly_charges", 1.5), column("age", 0.9, drifted=False))

    plan = plan_retraining(drift(0.36, *columns), no_drop(), ROWS, True, False, RULES)

    assert plan.ladder == (Strategy.WARM_START, Strategy.FULL)
    assert "column 'monthly_charges' drifted 15.0x" in plan.reason


def test_a_quality_drop_means_concept_drift_warm_start_on_new_rows_only() -> None:
    """Old reference rows would teach the relationships that just stopped holding."""
    quality = QualityDrop(deployed_auc=0.84, batch_auc=0.77, threshold=0.05)

    plan = plan_retraining(drift(0.0), quality, ROWS, True, False, RULES)

    assert plan.ladder == (Strategy.WARM_START, Strategy.FULL)
    assert plan.reference_fraction == 0.0
    assert "relationships changed" in plan.reason


def test_few_labelled_rows_only_refit() -> None:
    quality = QualityDrop(deployed_auc=0.84, batch_auc=0.70, threshold=0.05)

    plan = plan_retraining(drift(0.8), quality, 400, True, False, RULES)

    assert plan.ladder == (Strategy.REFIT,)
    assert "only 400 labelled rows (< policy.min_rows_new_trees 1000)" in plan.reason


def test_without_a_champion_the_first_model_is_a_full_retrain_on_the_batch_alone() -> None:
    plan = plan_retraining(no_reference(ROWS, 0.3), None, ROWS, False, False, RULES)

    assert plan.ladder == (Strategy.FULL,)
    assert plan.reference_fraction == 0.0


@pytest.mark.parametrize(
    ("quality", "fraction"), [(None, RULES.reference_fraction), (QualityDrop(0.84, 0.70, 0.05), 0.0)]
)
def test_always_retrain_is_a_full_retrain_on_the_same_window_as_a_warm_start(
    quality: QualityDrop | None, fraction: float
) -> None:
    plan = plan_retraining(drift(0.0), quality, ROWS, True, True, RULES)

    assert plan.ladder == (Strategy.FULL,)
    assert plan.reference_fraction == fraction
    assert "always-retrain" in plan.reason


def test_the_gate_names_the_first_strategy_of_the_plan() -> None:
    """Without labels (no quality check), the drifted share is compared with drift_share_threshold."""
    decision = decide_retraining(drift(0.36, column("channel", 0.2)), has_champion=True)

    assert decision.retrain and decision.strategy is Strategy.REFIT
    assert decision.reason.startswith("weighted drifted share 0.36 (plain 0.36) >= threshold 0.30")
    assert decision.reason.endswith("moderate drift: refit first, escalating if it misses the quality bar")


def test_the_gate_uses_the_rules_and_row_count_it_is_given() -> None:
    strict = StrategyRules(severe_drift_share=0.3)

    assert decide_retraining(drift(0.36), True, rules=strict).strategy is Strategy.WARM_START
    assert decide_retraining(drift(0.36), True, rules=strict, labelled_rows=10).strategy is Strategy.REFIT


def test_the_bar_is_the_champion_on_the_same_rows_plus_the_minimum_gain() -> None:
    bar = quality_bar(0.80, StrategyRules(min_gain_auc=0.01))

    assert bar is not None and bar.auc == pytest.approx(0.81)
    assert "champion 0.8000 + policy.min_gain_auc 0.010" in bar.reason
    assert quality_bar(None, RULES) is None


def test_the_first_attempt_meeting_the_bar_is_chosen_and_the_reason_says_what_fell_short() -> None:
    bar = quality_bar(0.80, RULES)
    attempts = [(Strategy.REFIT, 0.802), (Strategy.WARM_START, 0.83)]

    index, reason = choose_final(attempts, bar)

    assert index == 1
    assert reason.startswith("warm_start reached valid AUC 0.8300 >= bar 0.8050")
    assert reason.endswith("after refit fell short")


def test_a_candidate_exactly_at_the_bar_meets_it_despite_float_rounding() -> None:
    bar = quality_bar(0.80, StrategyRules(min_gain_auc=0.01))

    assert choose_final([(Strategy.REFIT, 0.81)], bar)[0] == 0


def test_when_no_attempt_meets_the_bar_the_best_one_is_kept() -> None:
    bar = quality_bar(0.80, StrategyRules(min_gain_auc=0.1))
    attempts = [(Strategy.REFIT, 0.81), (Strategy.WARM_START, 0.84), (Strategy.FULL, 0.83)]

    index, reason = choose_final(attempts, bar)

    assert index == 1
    assert reason.startswith("no strategy reached the bar 0.9000")
    assert "warm_start had the best valid AUC 0.8400" in reason


def test_without_a_bar_the_only_attempt_is_kept() -> None:
    assert choose_final([(Strategy.FULL, 0.7)], None) == (0, "full_retrain (valid AUC 0.7000)")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("severe_drift_share", 1.5, r"policy\.severe_drift_share = 1\.5 must be between 0 and 1"),
        ("min_gain_auc", -0.1, r"policy\.min_gain_auc = -0\.1 must be between 0 and 1"),
        ("reference_fraction", -1.0, r"policy\.reference_fraction = -1\.0 must be >= 0"),
        ("severe_column_drift", 0.0, r"policy\.severe_column_drift must be > 0"),
        ("drift_patience", 0, r"policy\.drift_patience = 0 must be >= 1"),
        ("cooldown_batches", -1, r"policy\.cooldown_batches = -1 >= 0"),
    ],
)
def test_out_of_range_rules_are_refused_naming_the_setting(field: str, value: float, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        StrategyRules(**{field: value})


def test_the_policy_resource_hands_its_fields_to_the_rules_and_the_trainer() -> None:
    policy = RetrainPolicy(
        severe_drift_share=0.4,
        severe_column_drift=3.0,
        min_rows_new_trees=500,
        reference_fraction=1.0,
        min_gain_auc=0.01,
        refit_decay_rate=0.7,
        early_stopping_rounds_warm_start=5,
    )

    assert policy.strategy_rules() == StrategyRules(0.4, 3.0, 500, 1.0, 0.01)
    assert RetrainPolicy(drift_patience=3, cooldown_batches=2).strategy_rules() == StrategyRules(
        drift_patience=3, cooldown_batches=2
    )
    settings = policy.training_settings()
    assert (settings.refit_decay_rate, settings.early_stopping_rounds_warm_start) == (0.7, 5)
