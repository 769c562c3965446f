"""The energy ledger asset and the asset checks, on real runs."""

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance

from green_pipeline.definitions import defs
from green_pipeline.runner import process_batches
from green_pipeline.store import ModelStore

pytestmark = pytest.mark.integration


def _check_results(instance: DagsterInstance, run_id: str) -> dict[tuple[str, str | None], bool]:
    results = {}
    for event in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = event.dagster_event.event_specific_data
        results[(evaluation.check_name, evaluation.partition)] = evaluation.passed
    return results


def test_ledger_reports_totals_avoided_energy_and_a_chart(processed) -> None:
    _, instance, outcomes = processed
    result = defs.resolve_job_def("energy_ledger_job").execute_in_process(instance=instance)
    assert result.success
    metadata = instance.fetch_materializations(AssetKey("energy_ledger"), limit=1).records[0]
    values = metadata.asset_materialization.metadata
    assert values["batches"].value == 3 and values["retrains"].value == 2 and values["skipped_retrains"].value == 1
    first_retrain = _retrain_energy(instance, outcomes[0].run_id)
    assert values["avoided_energy_kwh"].value == pytest.approx(first_retrain)
    assert values["total_energy_kwh"].value >= sum(o.energy_kwh for o in outcomes) * (1 - 1e-9)
    assert values["energy_per_1k_predictions_kwh"].value > 0
    assert values["chart"].value.startswith("![energy and quality per batch](data:image/png;base64,iVBOR")
    assert "drift_report" in values["per_asset"].value
    assert _check_results(instance, result.run_id) == {("energy_budget_per_run", None): True}


def _retrain_energy(instance: DagsterInstance, run_id: str) -> float:
    steps = ("retrained_model", "model_evaluation", "compressed_model", "deployed_model")
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return sum(
        e.asset_materialization.metadata["energy_kwh"].value
        for e in events
        if e.asset_materialization.asset_key.to_user_string() in steps
    )


def test_drift_check_warns_only_on_the_drifted_batch(processed) -> None:
    workspace, instance, outcomes = processed
    assert _check_results(instance, outcomes[1].run_id)[("drift_below_threshold", workspace.batches[1])] is True
    drifted = _check_results(instance, outcomes[2].run_id)
    assert drifted[("drift_below_threshold", workspace.batches[2])] is False
    assert drifted[("quality_floor", workspace.batches[2])] is True


def test_a_failing_quality_floor_blocks_deployment(workspace, instance: DagsterInstance) -> None:
    config = workspace.config()
    config["resources"]["check_thresholds"] = {"config": {"quality_floor_auc": 0.99}}
    outcome = next(process_batches(defs, instance, workspace.batches[:1], config))
    assert _check_results(instance, outcome.run_id)[("quality_floor", workspace.batches[0])] is False
    assert outcome.deployed_version is None
    assert ModelStore(workspace.store_url).current_version() is None
    assert instance.get_latest_materialization_event(AssetKey("deployed_model")) is None
    assert AssetCheckKey(AssetKey("compressed_model"), "quality_floor") in defs.resolve_asset_graph().asset_check_keys
