"""Hysteresis and learning from wasted retrains, as plain functions: the history of earlier batches and the gate."""

from __future__ import annotations

import pytest

from green_pipeline.drift.detection import DriftResult
from green_pipeline.training.policy import (
    GateHistory,
    Outcome,
    PastBatch,
    QualityDrop,
    StrategyRules,
    Trigger,
    decide_retraining,
    gate_history,
)

UNLABELLED_DRIFT = DriftResult(0.5, 5, 10, 0.3, reference_rows=5000, current_rows=5000)
QUIET = DriftResult(0.0, 0, 10, 0.3, reference_rows=5000, current_rows=5000)
CLEAR_DROP = QualityDrop(deployed_auc=0.85, batch_auc=0.70, threshold=0.05, batch_upper=0.72, confidence=0.95)


def batch(
    name: str,
    outcome: Outcome = Outcome.KEEP_SERVING,
    trigger: Trigger | None = None,
    drift: bool = False,
    quality: bool = False,
    promoted: bool | None = None,
) -> PastBatch:
    return PastBatch(name, outcome, trigger, drift, quality, promoted)


def test_streaks_count_consecutive_signals_since_the_last_retrain() -> None:
    history = gate_history(
        [
            batch("a", Outcome.RETRAIN, Trigger.NO_CHAMPION, promoted=True),
            batch("b", drift=True),
            batch("c"),
            batch("d", drift=True, quality=True),
            batch("e", drift=True),
        ]
    )

    assert history == GateHistory(drift_streak=2, quality_streak=0, batches_since_retrain=4)


def test_a_retrain_resets_the_streaks_and_pooled_batches_neither_count_nor_break_them() -> None:
    history = gate_history(
        [
            batch("a", drift=True),
            batch("b", Outcome.RETRAIN, Trigger.DRIFT, drift=True, promoted=True),
            batch("c", drift=True),
            batch("d", Outcome.POOLED),
            batch("e", drift=True),
            batch("f", Outcome.POOLED),
            batch("g", Outcome.POOLED),
        ]
    )

    assert history.drift_streak == 2 and history.batches_since_retrain == 2
    assert history.pooled_batches == ("f", "g")


def test_wasted_retrains_are_counted_per_trigger_until_a_promotion() -> None:
    wasted_drift = batch("b", Outcome.RETRAIN, Trigger.DRIFT, drift=True, promoted=False)
    wasted_quality = batch("c", Outcome.RETRAIN, Trigger.QUALITY_DROP, quality=True, promoted=False)
    promoted = batch("a", Outcome.RETRAIN, Trigger.DRIFT, drift=True, promoted=True)

    history = gate_history([wasted_drift, promoted, wasted_drift, wasted_quality, wasted_drift])
    after_promotion = gate_history([wasted_drift, wasted_quality, promoted])

    assert (history.wasted_drift_retrains, history.wasted_quality_retrains, history.wasted_retrains) == (2, 1, 3)
    assert (after_promotion.wasted_drift_retrains, after_promotion.wasted_quality_retrains) == (0, 0)
    assert after_promotion.wasted_retrains == 0


def test_drift_retrains_only_after_patience_consecutive_drifted_batches() -> None:
    rules = StrategyRules(drift_patience=2)

    first = decide_retraining(UNLABELLED_DRIFT, True, rules=rules, history=GateHistory(batches_since_retrain=3))
    second = decide_retraining(
        UNLABELLED_DRIFT, True, rules=rules, history=GateHistory(drift_streak=1, batches_since_retrain=4)
    )

    assert not first.retrain and "1 of 2 consecutive drifted batches" in first.reason
    assert second.retrain and second.trigger is Trigger.DRIFT
    assert second.evidence is not None and second.evidence.drift_streak == 2


def test_a_wasted_drift_retrain_doubles_the_patience_until_a_promotion() -> None:
    history = GateHistory(drift_streak=1, batches_since_retrain=1, wasted_drift_retrains=1)

    decision = decide_retraining(UNLABELLED_DRIFT, True, history=history)

    assert decision.evidence is not None and decision.evidence.drift_patience == 2
    assert decision.retrain  # two consecutive drifted batches: the stronger evidence is there
    held = decide_retraining(
        UNLABELLED_DRIFT, True, history=GateHistory(batches_since_retrain=0, wasted_drift_retrains=2)
    )
    assert not held.retrain and "1 of 4 consecutive drifted batches" in held.reason


def test_a_cooldown_holds_drift_back_but_not_a_clear_quality_drop() -> None:
    rules = StrategyRules(cooldown_batches=2)
    history = GateHistory(batches_since_retrain=1)

    drift_only = decide_retraining(UNLABELLED_DRIFT, True, rules=rules, history=history)
    quality = decide_retraining(QUIET, True, CLEAR_DROP, rules=rules, history=history)

    assert not drift_only.retrain and "cooldown: 1 of policy.cooldown_batches 2" in drift_only.reason
    assert quality.retrain and quality.trigger is Trigger.QUALITY_DROP


def test_a_clear_quality_drop_is_not_held_back_by_drift_patience() -> None:
    decision = decide_retraining(QUIET, True, CLEAR_DROP, rules=StrategyRules(drift_patience=5))

    assert decision.retrain and decision.trigger is Trigger.QUALITY_DROP
    assert "AUC fell 0.150" in decision.reason and "upper bound 0.7200 at 95%" in decision.reason


def test_after_a_wasted_quality_retrain_the_drop_must_persist() -> None:
    history = GateHistory(batches_since_retrain=0, wasted_quality_retrains=1)

    once = decide_retraining(QUIET, True, CLEAR_DROP, history=history)
    twice = decide_retraining(QUIET, True, CLEAR_DROP, history=GateHistory(quality_streak=1, wasted_quality_retrains=1))

    assert not once.retrain and "1 of 2 consecutive batches after 1 wasted retrain(s)" in once.reason
    assert twice.retrain


@pytest.mark.parametrize(("share", "opens"), [(0.45, False), (0.55, True)])
def test_with_labels_drift_alone_opens_the_gate_only_past_the_severe_level(share: float, opens: bool) -> None:
    drift = DriftResult(share, 5, 10, 0.3, reference_rows=5000, current_rows=5000)
    no_drop = QualityDrop(deployed_auc=0.85, batch_auc=0.84, threshold=0.05, batch_upper=0.85, confidence=0.95)

    decision = decide_retraining(drift, True, no_drop)

    assert decision.retrain is opens
    assert decision.evidence is not None and decision.evidence.drift_threshold == StrategyRules().severe_drift_share
