"""The retrained model's materialization, through real Dagster runs: strategy, attempts, energy and reason."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration


def retrained_metadata(instance: DagsterInstance, batch: str) -> dict[str, object]:
    records = instance.fetch_materializations(AssetKey("retrained_model"), limit=10).records
    record = next(r for r in records if r.partition_key == batch)
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


@pytest.fixture
def escalated(workspace, instance: DagsterInstance) -> list[BatchOutcome]:
    """Day 0 trains the first model; day 2's covariate shift starts at warm start, and a bar of 1.0 AUC over
    the champion cannot be met, so the pipeline escalates to a full retrain and keeps the better of the two."""
    batches = [workspace.batches[0], workspace.batches[2]]
    return list(process_batches(defs, instance, batches, workspace.config(min_gain_auc=1.0)))


def test_the_retrained_model_names_the_strategies_tried_with_their_energy(escalated, instance, workspace) -> None:
    drifted = escalated[1]
    assert drifted.success and drifted.retrained

    metadata = retrained_metadata(instance, drifted.batch)

    assert metadata["strategies_tried"] == "warm_start, full_retrain"
    assert metadata["attempts"] == 2
    for strategy in ("warm_start", "full_retrain"):
        assert metadata[f"attempt_{strategy}_energy_kwh"] > 0
        assert 0.5 < metadata[f"attempt_{strategy}_valid_auc"] <= 1.0
    best = max(("warm_start", "full_retrain"), key=lambda s: metadata[f"attempt_{s}_valid_auc"])
    assert metadata["strategy"] == drifted.strategy == best
    assert "drifted share" in metadata["reason"] and "no strategy reached the bar" in metadata["reason"]
    assert metadata["quality_bar_auc"] > 1.0
    assert "| warm_start |" in metadata["attempts_table"] and "| full_retrain |" in metadata["attempts_table"]
    assert sum(metadata[f"attempt_{s}_energy_kwh"] for s in ("warm_start", "full_retrain")) <= metadata["energy_kwh"]
    lineage = ModelStore(workspace.store_url).load(drifted.deployed_version).metadata["lineage"]
    assert lineage["strategy"] == best


def test_the_always_retrain_baseline_runs_the_same_code_on_the_same_window(workspace, instance) -> None:
    batches = workspace.batches[:2]

    outcomes = list(process_batches(defs, instance, batches, workspace.config(always_retrain=True)))

    metadata = retrained_metadata(instance, batches[1])
    assert [o.strategy for o in outcomes] == ["full_retrain", "full_retrain"]
    assert metadata["strategies_tried"] == "full_retrain"
    assert metadata["attempt_full_retrain_energy_kwh"] > 0
    assert metadata["reference_rows"] > 0 and "always-retrain baseline" in metadata["reason"]
