"""The energy ledger asset and the asset checks, on real runs."""

import logging

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches
from green_pipeline.assets.deployment import deployed_model
from green_pipeline.assets.scoring import predictions
from green_pipeline.assets.training import model_evaluation
from green_pipeline.orchestration.ledger import run_materializations
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration


def _check_results(instance: DagsterInstance, run_id: str) -> dict[str, bool]:
    """Each check's verdict in one batch's run (the checks judge their run's own materialization)."""
    results = {}
    for event in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = event.dagster_event.event_specific_data
        results[evaluation.check_name] = evaluation.passed
    return results


def test_ledger_reports_totals_avoided_energy_and_a_chart(processed) -> None:
    _, instance, outcomes = processed
    result = defs.resolve_job_def("energy_ledger_job").execute_in_process(instance=instance)
    assert result.success
    metadata = instance.fetch_materializations(AssetKey("energy_ledger"), limit=1).records[0]
    values = metadata.asset_materialization.metadata
    assert values["batches"].value == 3 and values["retrains"].value == 2 and values["skipped_retrains"].value == 1
    assert values["wasted_retrains"].value == 0 and values["wasted_retrain_energy_kwh"].value == 0
    first_retrain = _retrain_energy(instance, outcomes[0].run_id)
    assert values["avoided_energy_kwh"].value == pytest.approx(first_retrain)
    assert values["total_energy_kwh"].value >= sum(o.energy_kwh for o in outcomes) * (1 - 1e-9)
    assert values["energy_per_1k_predictions_kwh"].value > 0
    assert values["chart"].value.startswith("![energy and quality per batch](data:image/png;base64,iVBOR")
    assert "drift_report" in values["per_asset"].value
    assert _check_results(instance, result.run_id) == {"energy_budget_per_run": True}


def _retrain_energy(instance: DagsterInstance, run_id: str) -> float:
    steps = ("retrained_model", "model_evaluation", "compressed_model", "deployed_model")
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return sum(
        e.asset_materialization.metadata["energy_kwh"].value
        for e in events
        if e.asset_materialization.asset_key.to_user_string() in steps
    )


def test_drift_check_warns_only_on_the_drifted_batch(processed) -> None:
    _, instance, outcomes = processed
    assert _check_results(instance, outcomes[1].run_id) == {
        "drift_below_threshold": True,
        "energy_budget_per_month": True,
    }
    drifted = _check_results(instance, outcomes[2].run_id)
    assert drifted["drift_below_threshold"] is False
    assert drifted["quality_floor"] is True


def test_a_model_under_the_quality_floor_is_rejected_and_the_champion_keeps_serving(
    workspace, instance: DagsterInstance
) -> None:
    """The floor is part of the promotion decision: a normal, visible outcome, never a failed run or a warning."""
    [first] = process_batches(defs, instance, workspace.batches[:1], workspace.config())
    assert first.success and ModelStore(workspace.store_url).current_version() == "v0001"
    config = workspace.config(always_retrain=True)
    config["resources"]["check_thresholds"] = {"config": {"quality_floor_auc": 0.99}}

    rejected, following = process_batches(defs, instance, workspace.batches[1:], config)

    assert rejected.success and rejected.retrained and rejected.deployed_version == "v0002"
    deployment = _metadata(instance, rejected.run_id, deployed_model.key)
    assert deployment["promoted"] is False and deployment["decision"] == "rejected"
    evaluation = _metadata(instance, rejected.run_id, model_evaluation.key)
    upper, reason = evaluation["challenger_auc_upper"], deployment["reason"]
    assert evaluation["challenger_auc"] == pytest.approx(deployment["test_auc"]) and upper < 0.99
    assert f"[{evaluation['challenger_auc_lower']:.4f}, {upper:.4f}] at 95% is below the quality floor 0.9900" in reason
    assert deployment["serving_version"] == rejected.serving_version == "v0001"
    assert _check_results(instance, rejected.run_id)["quality_floor"] is False
    assert not _warnings(instance, rejected.run_id)
    assert following.success and following.served_auc is not None
    assert _metadata(instance, following.run_id, predictions.key)["model_version"] == "v0001"
    store = ModelStore(workspace.store_url)
    assert store.current_version() == "v0001" and store.versions() == ["v0001", "v0002", "v0003"]
    assert store.metadata("v0002")["promotion"]["decision"] == "rejected"
    ledger = defs.resolve_job_def("energy_ledger_job").execute_in_process(instance=instance, run_config=config)
    wasted = ledger.asset_materializations_for_node("energy_ledger")[0].metadata
    assert wasted["wasted_retrains"].value == 2 and wasted["wasted_retrain_energy_kwh"].value > 0


def _metadata(instance: DagsterInstance, run_id: str, key: AssetKey) -> dict[str, object]:
    [event] = [e for e in run_materializations(instance, run_id) if e.asset_materialization.asset_key == key]
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def _warnings(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id) if e.level >= logging.WARNING]
