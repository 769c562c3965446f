from __future__ import annotations

import pytest

from green_pipeline.drift.detection import DriftResult, no_reference
from green_pipeline.training.policy import QualityDrop, Strategy, decide_retraining

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
    assert "weighted drifted share 0.50 (plain 0.50) >= threshold 0.30" in decision.reason


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
    assert "no clear AUC drop 0.020" in decision.reason
    assert "0.8500 at deployment minus policy.quality_drop_threshold_auc 0.050 = 0.8000" in decision.reason


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
