from __future__ import annotations

import pytest

from green_pipeline.drift.detection import DriftResult, no_reference
from green_pipeline.training.policy import QualityDrop, Strategy, decide_retraining
from green_pipeline.training.promotion import decide_promotion

THRESHOLD = 0.3


def compared(share: float) -> DriftResult:
    return DriftResult(share, round(share * 10), 10, THRESHOLD, reference_rows=1000, current_rows=1000)


def test_no_champion_means_a_full_retrain() -> None:
    decision = decide_retraining(no_reference(1000, THRESHOLD), has_champion=False)

    assert decision.retrain
    assert decision.strategy is Strategy.FULL
    assert "no model is deployed" in decision.reason


def test_drift_above_threshold_warm_starts() -> None:
    decision = decide_retraining(compared(0.5), has_champion=True)

    assert decision.retrain
    assert decision.strategy is Strategy.WARM_START
    assert "drifted share 0.50 >= threshold 0.30" in decision.reason


def test_quality_drop_above_threshold_warm_starts_even_without_drift() -> None:
    quality = QualityDrop(deployed_auc=0.85, batch_auc=0.72, threshold=0.05)

    decision = decide_retraining(compared(0.0), has_champion=True, quality=quality)

    assert decision.retrain
    assert decision.strategy is Strategy.WARM_START
    assert "AUC fell 0.130" in decision.reason


def test_no_drift_and_small_quality_drop_keeps_serving() -> None:
    quality = QualityDrop(deployed_auc=0.85, batch_auc=0.83, threshold=0.05)

    decision = decide_retraining(compared(0.1), has_champion=True, quality=quality)

    assert not decision.retrain
    assert decision.strategy is None
    assert "keep serving" in decision.reason
    assert "AUC drop 0.020 < 0.050" in decision.reason


def test_no_drift_without_a_quality_check_keeps_serving() -> None:
    decision = decide_retraining(compared(0.1), has_champion=True)

    assert not decision.retrain
    assert decision.strategy is None


def test_an_improving_model_is_not_a_quality_drop() -> None:
    quality = QualityDrop(deployed_auc=0.80, batch_auc=0.90, threshold=0.05)

    assert quality.drop == pytest.approx(-0.10)
    assert not quality.passes_threshold
    assert not decide_retraining(compared(0.0), has_champion=True, quality=quality).retrain


@pytest.mark.parametrize("has_champion", [True, False])
def test_always_retrain_is_a_full_retrain_every_batch(has_champion: bool) -> None:
    decision = decide_retraining(compared(0.0), has_champion=has_champion, always_retrain=True)

    assert decision.retrain
    assert decision.strategy is Strategy.FULL
    assert "always-retrain" in decision.reason


#: The default check_thresholds.quality_floor_auc; the challengers below reach it unless a test says otherwise.
FLOOR = 0.65


def test_first_model_is_promoted() -> None:
    decision = decide_promotion(None, challenger_auc=0.7, tolerance=0.0, quality_floor=FLOOR)

    assert decision.promote
    assert decision.outcome == "promoted"
    assert "no champion" in decision.reason


@pytest.mark.parametrize("challenger_auc", [0.79, 0.81, 0.835])
def test_challenger_within_tolerance_is_promoted(challenger_auc: float) -> None:
    assert decide_promotion(0.8, challenger_auc, tolerance=0.02, quality_floor=FLOOR).promote


def test_challenger_exactly_at_the_tolerance_is_promoted_despite_float_rounding() -> None:
    assert 0.79 - 0.80 < -0.01
    assert decide_promotion(0.80, 0.79, tolerance=0.01, quality_floor=FLOOR).promote


def test_challenger_beyond_tolerance_is_not_promoted() -> None:
    decision = decide_promotion(0.80, 0.75, tolerance=0.02, quality_floor=FLOOR)

    assert not decision.promote
    assert decision.outcome == "rejected"
    assert "0.0500 below champion 0.8000" in decision.reason
    assert "champion keeps serving" in decision.reason


@pytest.mark.parametrize("champion_auc", [None, 0.60])
def test_challenger_under_the_quality_floor_is_rejected_even_if_it_beats_the_champion(
    champion_auc: float | None,
) -> None:
    decision = decide_promotion(champion_auc, challenger_auc=0.64, tolerance=0.02, quality_floor=FLOOR)

    assert not decision.promote
    assert decision.outcome == "rejected"
    assert "challenger AUC 0.6400 is below the quality floor 0.6500" in decision.reason
    assert "check_thresholds.quality_floor_auc" in decision.reason


def test_challenger_exactly_at_the_floor_is_promoted_despite_float_rounding() -> None:
    assert 0.1 + 0.2 > 0.3
    assert decide_promotion(None, challenger_auc=0.3, tolerance=0.0, quality_floor=0.1 + 0.2).promote
