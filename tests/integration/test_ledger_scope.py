"""The ledger reads this code location's assets only, so a Dagster instance can be shared with other projects."""

from datetime import UTC, datetime

import pytest
from dagster import DagsterInstance, MaterializeResult, asset, materialize

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches
from green_pipeline.energy.budget import Budget, BudgetSeverity
from green_pipeline.orchestration.ledger import all_entries, materializations, month_budget_status
from green_pipeline.orchestration.metadata import PROJECT_ASSETS

pytestmark = pytest.mark.integration


@asset
def other_teams_table() -> MaterializeResult:
    """Another code location's asset: no energy metadata, so the ledger would count it as an unmeasured step."""
    return MaterializeResult(metadata={"rows": 10})


@asset
def other_teams_model() -> MaterializeResult:
    """Another code location's asset reporting energy under the same key: not ours to charge to this pipeline."""
    return MaterializeResult(metadata={"energy_kwh": 1.0, "duration_s": 3600.0})


def test_materializations_of_another_code_location_on_the_same_instance_are_not_counted(
    workspace, instance: DagsterInstance
) -> None:
    [outcome] = process_batches(defs, instance, workspace.batches[:1], workspace.config())
    assert outcome.success and outcome.unmeasured_steps == 0
    foreign = materialize([other_teams_table, other_teams_model], instance=instance)
    assert foreign.success
    assert {other_teams_table.key, other_teams_model.key} <= set(instance.get_asset_keys())

    read = {event.asset_materialization.asset_key for event in materializations(instance)}
    entries = all_entries(instance)
    month = month_budget_status(instance, Budget(0.5, BudgetSeverity.BLOCK), datetime.now(UTC))

    assert read and read <= set(PROJECT_ASSETS)
    assert {entry.run_id for entry in entries} == {outcome.run_id}
    assert month.unmeasured_steps == 0 and not month.exceeded
    assert month.spent_kwh == pytest.approx(outcome.energy_kwh)
