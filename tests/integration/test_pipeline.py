"""The whole graph through real Dagster runs: skip on no drift, warm start on drift, energy on everything."""

import json

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from green_pipeline.definitions import defs
from green_pipeline.runner import BatchOutcome, process_batches
from green_pipeline.store import ModelStore

pytestmark = pytest.mark.integration

ENERGY_FIELDS = (
    "energy_kwh",
    "emissions_kg_co2eq",
    "duration_s",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "gpu_energy_kwh",
    "country_iso_code",
    "carbon_intensity_g_per_kwh",
    "energy_method",
)


@pytest.fixture
def outcomes(workspace, instance: DagsterInstance) -> list[BatchOutcome]:
    return list(process_batches(defs, instance, workspace.batches, workspace.config()))


def test_first_batch_trains_and_deploys_from_scratch(outcomes: list[BatchOutcome]) -> None:
    first = outcomes[0]
    assert first.success and first.retrained and first.strategy == "full_retrain"
    assert first.deployed_version == "v0001" and first.serving_version == "v0001"


def test_no_drift_batch_skips_retraining_and_everything_after(outcomes, instance: DagsterInstance) -> None:
    quiet = outcomes[1]
    assert quiet.success and not quiet.retrained and quiet.drifted_share is not None
    assert quiet.drifted_share < 0.3 and quiet.served_auc is not None and quiet.served_auc > 0.7
    skipped = {event.step_key for event in instance.all_logs(quiet.run_id, of_type=DagsterEventType.STEP_SKIPPED)}
    assert skipped == {"model_evaluation", "compressed_model", "deployed_model"}
    materialized = {
        e.asset_materialization.asset_key.to_user_string()
        for e in instance.all_logs(quiet.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {"ingested_batch", "validated_batch", "drift_report"}


def test_drifted_batch_warm_starts_and_is_promoted(outcomes, workspace) -> None:
    drifted = outcomes[2]
    assert drifted.success and drifted.drifted_share is not None and drifted.drifted_share >= 0.3
    assert drifted.retrained and drifted.strategy == "warm_start"
    assert drifted.deployed_version == "v0002" and drifted.serving_version == "v0002"
    store = ModelStore(workspace.store_url)
    deployed = store.load()
    assert deployed.version == "v0002"
    lineage = deployed.metadata["lineage"]
    assert lineage["parent_version"] == "v0001" and lineage["strategy"] == "warm_start"
    assert lineage["batch"] == workspace.batches[2]
    assert deployed.metadata["energy"]["retrained_model_energy_kwh"] > 0


def test_drift_report_names_columns_and_saves_html(outcomes, instance: DagsterInstance) -> None:
    event = instance.fetch_materializations(AssetKey("drift_report"), limit=1).records[0]
    metadata = event.asset_materialization.metadata
    assert event.partition_key == outcomes[2].batch
    assert "monthly_charges" in metadata["top_drifted_columns"].value
    assert metadata["retrain_required"].value is True
    with open(metadata["report_path"].value, encoding="utf-8") as report:
        assert "<html" in report.read(2000).lower()


def test_every_asset_materialization_carries_measured_energy(outcomes, instance: DagsterInstance) -> None:
    asset_keys = {key for assets_def in defs.assets for key in assets_def.keys}
    for key in asset_keys:
        records = instance.fetch_materializations(key, limit=100).records
        assert records, f"{key.to_user_string()} was never materialized"
        for record in records:
            metadata = record.asset_materialization.metadata
            missing = [field for field in ENERGY_FIELDS if field not in metadata]
            assert not missing, f"{key.to_user_string()} lacks {missing}"
            assert metadata["energy_kwh"].value > 0
            assert metadata["country_iso_code"].value == "FRA"


def test_unmeasured_energy_is_said_and_the_run_goes_on(workspace, instance: DagsterInstance) -> None:
    config = workspace.config()
    config["resources"]["energy"] = {"config": {"enabled": False}}
    outcome = next(process_batches(defs, instance, workspace.batches[:1], config))
    assert outcome.success and outcome.unmeasured_steps == 7 and outcome.energy_kwh == 0
    record = instance.fetch_materializations(AssetKey("deployed_model"), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["energy_status"].value == "unmeasured" and "energy_kwh" not in metadata


def test_always_retrain_baseline_retrains_every_batch(workspace, instance: DagsterInstance) -> None:
    outcomes = list(process_batches(defs, instance, workspace.batches, workspace.config(always_retrain=True)))
    assert [o.strategy for o in outcomes] == ["full_retrain"] * 3
    manifest = json.loads((workspace.root / "store/models/churn/v0003/manifest.json").read_text())
    assert set(manifest["sha256"]) == {"model.txt", "reference.parquet", "metadata.json"}


def test_bad_batch_fails_with_the_file_named_and_keeps_the_model(outcomes, workspace, instance) -> None:
    bad = "batch-2026-01-04.csv"
    (workspace.root / "data" / bad).write_text("tenure_months,churned\nabc,1\n")
    outcome = next(process_batches(defs, instance, [bad], workspace.config()))
    assert not outcome.success
    assert bad in outcome.error and "monthly_charges" in outcome.error
    assert ModelStore(workspace.store_url).current_version() == "v0002"
