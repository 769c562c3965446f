"""Energy KPIs of a version, energy budgets and the optional MLflow settings, as plain functions."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from green_pipeline.app.report import models_row, version_summary
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.budget import Budget, BudgetSeverity, month_of, retraining_block, spend_status
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.metadata import DeploymentRecord
from green_pipeline.orchestration.resources import MlflowTracking
from green_pipeline.records import CandidateModel, ChampionComparison, CompressedModel, Deployment
from green_pipeline.reporting.mlflow_logging import MlflowSettings, RunRecord, log_run
from green_pipeline.serving.release import energy_kpis
from green_pipeline.training.confidence import Interval
from green_pipeline.training.policy import Strategy
from green_pipeline.training.promotion import PromotionDecision

STEPS = ("retrained_model", "compressed_model")


def _compressed(test_auc: float, per_1k: float | None = 2e-8) -> CompressedModel:
    candidate = CandidateModel(
        batch="batch-1.parquet",
        model_text="",
        schema=FeatureSchema(label="y", numeric=("x",), categories={}),
        strategy=Strategy.WARM_START,
        parent_version="v0001",
        trees=10,
        new_trees=5,
        train_rows=100,
    )
    return CompressedModel(
        model=candidate,
        technique="prefix",
        trees_before=20,
        auc_before=test_auc,
        auc_after=test_auc,
        test_auc=test_auc,
        size_bytes_before=2000,
        size_bytes_after=1000,
        energy_per_1k_predictions_kwh=per_1k,
    )


def _comparison(champion_auc: float | None) -> ChampionComparison:
    challenger = Interval(0.8, 0.75, 0.85, 0.95)
    if champion_auc is None:
        return ChampionComparison(challenger, None, None, None, test_rows=10)
    champion = Interval(champion_auc, champion_auc - 0.05, champion_auc + 0.05, 0.95)
    gain = Interval(0.8 - champion_auc, 0.8 - champion_auc - 0.01, 0.8 - champion_auc + 0.01, 0.95)
    return ChampionComparison(challenger, champion, gain, "v0001", test_rows=10)


def test_quality_per_kwh_is_the_auc_gain_over_the_champion_per_kwh_of_retraining_and_compression() -> None:
    energy = {"retrained_model_energy_kwh": 3e-5, "compressed_model_energy_kwh": 1e-5, "deployed_model_energy_kwh": 1}
    kpis = energy_kpis(_compressed(0.84), _comparison(0.80), energy, STEPS)
    assert kpis.production_energy_kwh == pytest.approx(4e-5)
    assert kpis.quality_per_kwh == pytest.approx(0.04 / 4e-5)
    assert kpis.baseline == "champion v0001 on the same test rows"
    assert kpis.as_json()["quality_per_kwh"] == pytest.approx(1000.0)
    worse = energy_kpis(_compressed(0.78), _comparison(0.80), energy, STEPS)
    assert worse.quality_per_kwh == pytest.approx(-0.02 / 4e-5)  # a worse version shows a negative KPI


def test_the_first_version_is_measured_against_random_guessing() -> None:
    energy = {"retrained_model_energy_kwh": 1e-4, "compressed_model_energy_kwh": 1e-4}
    kpis = energy_kpis(_compressed(0.75), _comparison(None), energy, STEPS)
    assert kpis.auc_gain == pytest.approx(0.25) and "random guessing (AUC 0.5)" in kpis.baseline
    assert kpis.quality_per_kwh == pytest.approx(0.25 / 2e-4)


@pytest.mark.parametrize(
    "energy",
    [
        {"retrained_model_energy_kwh": None, "compressed_model_energy_kwh": 1e-5},
        {"compressed_model_energy_kwh": 1e-5},  # the retraining step left no entry
    ],
)
def test_unmeasured_energy_is_said_never_guessed(energy: dict[str, float | None]) -> None:
    kpis = energy_kpis(_compressed(0.84, per_1k=None), _comparison(0.80), energy, STEPS)
    assert kpis.as_json() == {
        "auc_gain": pytest.approx(0.04),
        "auc_gain_baseline": "champion v0001 on the same test rows",
        "production_energy_kwh": "unmeasured",
        "quality_per_kwh": "unmeasured",
        "energy_per_1k_predictions_kwh": "unmeasured",
    }
    deployment = Deployment("v0002", promoted=True, reason="better", serving_version="v0002")
    decision = PromotionDecision(True, "better")
    metadata = DeploymentRecord.of(deployment, decision, _compressed(0.84, per_1k=None), kpis).as_metadata()
    assert metadata["quality_per_kwh_status"] == "unmeasured" and "quality_per_kwh" not in metadata
    assert metadata["energy_per_1k_predictions"] == "unmeasured" and "energy_per_1k_predictions_kwh" not in metadata
    assert "production_energy_kwh" not in metadata


def test_models_listing_shows_the_kpis_and_unmeasured_and_old_versions() -> None:
    base = {"version": "v0002", "lineage": {"strategy": "refit"}, "energy": {"a": 1e-5}, "promotion": {}}
    measured = {**base, "metrics": {"quality_per_kwh": 1234.56, "energy_per_1k_predictions_kwh": 5e-8}}
    unmeasured = {**base, "metrics": {"quality_per_kwh": "unmeasured", "energy_per_1k_predictions_kwh": "unmeasured"}}
    assert "1234.6" in models_row(version_summary(measured, "v0002")) and "0.0500" in models_row(
        version_summary(measured, None)
    )
    assert models_row(version_summary(unmeasured, None)).count("unmeasured") == 2
    assert version_summary({**base, "metrics": {}}, None)["quality_per_kwh"] is None  # written before the KPI


def test_a_budget_blocks_retraining_only_when_exceeded_and_set_to_block() -> None:
    block, warn = Budget(1e-3, BudgetSeverity.BLOCK), Budget(1e-3, BudgetSeverity.WARN)
    over = spend_status("month 2026-11 (UTC)", [6e-4, None, 5e-4], block)
    assert over.spent_kwh == pytest.approx(1.1e-3) and over.unmeasured_steps == 1 and over.blocks_retraining
    assert "1 unmeasured steps, not counted" in over.describe() and "over the budget of 1.0000 Wh" in over.describe()
    assert not spend_status("m", [6e-4, 5e-4], warn).blocks_retraining
    assert spend_status("m", [6e-4, 5e-4], warn).exceeded
    projected = spend_status("run 1", [2e-4], block, expected_kwh=9e-4)
    assert projected.blocks_retraining and "expected for retraining" in projected.describe()
    assert not spend_status("run 1", [2e-4], block, expected_kwh=7e-4).exceeded
    assert retraining_block([spend_status("m", [1e-4], block), over]) == over.describe()
    assert retraining_block([spend_status("m", [1e-4], block)]) is None


def test_months_are_utc_calendar_months() -> None:
    late_evening_in_new_york = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert month_of(late_evening_in_new_york) == datetime(2026, 12, 1, tzinfo=UTC)


def test_mlflow_is_off_by_default_and_a_missing_install_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MlflowTracking().to_settings() is None
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without the extra looks like
    with pytest.raises(InvalidConfigError, match=r"pip install green-pipeline\[mlflow\]"):
        MlflowTracking(tracking_uri="file:///tmp/mlruns").to_settings()


def test_a_tracking_failure_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where MLflow needs a folder")
    settings = MlflowSettings(f"file://{blocker}/mlruns", "green-pipeline")
    result = log_run(settings, RunRecord("run-id", "batch-1.parquet", {}, {"test_auc": 0.8}, {}))
    assert result.run_id is None and result.error is not None and str(blocker) in result.error
    assert result.as_metadata() == {"mlflow_error": result.error}


def test_models_listing_says_rejected_and_why() -> None:
    base = {"version": "v0003", "lineage": {}, "energy": {}, "metrics": {}}
    reason = "rejected: challenger AUC 0.6000 [0.5600, 0.6400] at 95% is below the quality floor 0.6500"
    rejected = {**base, "promotion": {"promoted": False, "decision": "rejected", "reason": reason}}
    older = {**base, "promotion": {"promoted": False}}  # published before the decision was named

    line, why = models_row(version_summary(rejected, "v0001")).split("\n")
    assert line.endswith("rejected") and why == f"    {reason}"
    assert version_summary(rejected, "v0001")["reason"] == reason
    assert models_row(version_summary(older, None)).endswith("rejected")
    assert models_row(version_summary({**base, "promotion": {"promoted": True}}, "v0003")).endswith("promoted")
