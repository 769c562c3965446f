"""The promotion gate on intervals: the floor at the challenger's upper bound, the champion at the paired lower one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import pytest
from dagster import AssetMaterialization

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.orchestration.metadata import EvaluationRecord
from green_pipeline.records import ChampionComparison
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.confidence import Interval, auc_interval
from green_pipeline.training.evaluation import auc
from green_pipeline.training.promotion import compare_with_champion, decide_promotion, reaches_floor

if TYPE_CHECKING:
    from conftest import TrainedModel

#: The default check_thresholds.quality_floor_auc; the challengers below reach it unless a test says otherwise.
FLOOR = 0.65


def interval(estimate: float, half_width: float) -> Interval:
    return Interval(estimate, estimate - half_width, estimate + half_width, 0.95)


def first(challenger: Interval) -> ChampionComparison:
    return ChampionComparison(challenger, None, None, None, test_rows=73)


def against(challenger: Interval, champion: Interval, difference: Interval) -> ChampionComparison:
    return ChampionComparison(challenger, champion, difference, "v0001", test_rows=73)


def test_first_model_is_promoted_and_says_its_interval() -> None:
    decision = decide_promotion(first(interval(0.7, 0.05)), tolerance=0.0, quality_floor=FLOOR)

    assert decision.promote and decision.outcome == "promoted"
    assert "no champion" in decision.reason and "0.7000 [0.6500, 0.7500] at 95%" in decision.reason


def test_a_noisy_challenger_whose_upper_bound_reaches_the_floor_is_not_rejected_by_it() -> None:
    """An AUC of 0.62 on 73 rows may well be 0.68: the floor rejects only what is surely under it."""
    decision = decide_promotion(first(interval(0.62, 0.06)), tolerance=0.0, quality_floor=FLOOR)

    assert decision.promote


@pytest.mark.parametrize("has_champion", [False, True])
def test_a_challenger_under_the_floor_even_at_its_upper_bound_is_rejected_even_if_it_beats_the_champion(
    has_champion: bool,
) -> None:
    challenger = interval(0.60, 0.04)
    comparison = against(challenger, interval(0.55, 0.04), interval(0.05, 0.01)) if has_champion else first(challenger)

    decision = decide_promotion(comparison, tolerance=0.02, quality_floor=FLOOR)

    assert not decision.promote and decision.outcome == "rejected"
    assert "challenger AUC 0.6000 [0.5600, 0.6400] at 95% is below the quality floor 0.6500" in decision.reason
    assert "check_thresholds.quality_floor_auc" in decision.reason and "upper bound" in decision.reason
    assert ("champion keeps serving" in decision.reason) is has_champion


def test_a_challenger_surely_not_worse_than_the_champion_is_promoted() -> None:
    comparison = against(interval(0.80, 0.05), interval(0.79, 0.05), Interval(0.01, -0.004, 0.024, 0.95))

    decision = decide_promotion(comparison, tolerance=0.005, quality_floor=FLOOR)

    assert decision.promote
    assert "challenger - champion AUC 0.0100 [-0.0040, 0.0240] at 95% on 73 paired test rows" in decision.reason


def test_a_better_estimate_is_not_enough_when_the_challenger_may_be_worse() -> None:
    """The point estimate favours the challenger, but its lower bound says it may lose 0.03: the champion stays."""
    comparison = against(interval(0.80, 0.05), interval(0.79, 0.05), Interval(0.01, -0.03, 0.05, 0.95))

    decision = decide_promotion(comparison, tolerance=0.005, quality_floor=FLOOR)

    assert not decision.promote and decision.outcome == "rejected"
    assert "may be 0.0300 worse" in decision.reason and "tolerance 0.0050" in decision.reason
    assert "policy.promotion_tolerance_auc" in decision.reason and "champion keeps serving" in decision.reason


def test_bounds_exactly_at_the_floor_and_the_tolerance_pass_despite_float_rounding() -> None:
    assert 0.1 + 0.2 > 0.3 and 0.79 - 0.80 < -0.01
    assert reaches_floor(Interval(0.25, 0.2, 0.3, 0.95), quality_floor=0.1 + 0.2)
    comparison = against(interval(0.80, 0.05), interval(0.80, 0.05), Interval(0.0, 0.79 - 0.80, 0.01, 0.95))
    assert decide_promotion(comparison, tolerance=0.01, quality_floor=FLOOR).promote


def test_models_are_compared_on_the_same_rows_and_a_model_never_loses_to_itself(
    shifted_model: TrainedModel, day0_model: TrainedModel, schema: FeatureSchema
) -> None:
    test, challenger = shifted_model.split.test, shifted_model.result.booster

    alone = compare_with_champion(test, challenger, schema, None, confidence=0.9)
    itself = compare_with_champion(test, challenger, schema, _deployed(challenger, schema, "v0002"), confidence=0.9)
    older = compare_with_champion(test, challenger, schema, _deployed(day0_model.result.booster, schema), 0.9)

    assert alone.challenger == auc_interval(schema.labels(test), challenger.predict(schema.encode(test)), 0.9)
    assert alone.champion is None and alone.difference is None and alone.test_rows == len(test)
    assert itself.difference == Interval(0.0, 0.0, 0.0, 0.9) and itself.champion_version == "v0002"
    assert decide_promotion(itself, tolerance=0.0, quality_floor=FLOOR).promote
    assert older.challenger == alone.challenger  # the challenger's interval does not depend on the pairing
    assert older.champion_auc == pytest.approx(auc(day0_model.result.booster, test, schema))
    assert older.difference is not None
    assert older.difference.estimate == pytest.approx(older.challenger_auc - older.champion_auc)
    assert older.confidence == 0.9


def test_the_floor_check_reads_back_the_interval_the_gate_decided_on() -> None:
    """The quality_floor check applies ``reaches_floor`` to the evaluation's metadata: it must agree with the gate."""
    for comparison in (
        against(interval(0.62, 0.02), interval(0.70, 0.02), interval(-0.08, 0.01)),
        first(interval(0.62, 0.04)),
    ):
        written = EvaluationRecord.of(comparison)
        read = EvaluationRecord.from_metadata(
            AssetMaterialization(EvaluationRecord.asset, metadata=written.as_metadata()).metadata
        )
        assert read == written and read.challenger() == comparison.challenger
        floor_rejects = "quality floor" in decide_promotion(comparison, 0.0, FLOOR).reason
        assert reaches_floor(read.challenger(), FLOOR) is not floor_rejects


def _deployed(booster: object, schema: FeatureSchema, version: str = "v0001") -> DeployedModel:
    return DeployedModel(version, "", booster, schema, pd.DataFrame(), {})  # type: ignore[arg-type]
