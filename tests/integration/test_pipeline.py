"""The whole graph through real Dagster runs: skip on no drift, warm start on drift, energy on everything."""

import json

import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance
from sklearn.metrics import roc_auc_score

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration

ENERGY_FIELDS = (
    "energy_kwh",
    "emissions_kg_co2eq",
    "duration_s",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "gpu_energy_kwh",
    "energy_mwh",
    "carbon_intensity_g_per_kwh",
    "energy_method",
)


@pytest.fixture
def outcomes(processed) -> list[BatchOutcome]:
    return processed[2]


@pytest.fixture
def processed_workspace(processed):
    return processed[0]


@pytest.fixture
def processed_instance(processed) -> DagsterInstance:
    return processed[1]


def _latest_or_none(instance: DagsterInstance, asset: str, partition: str):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization if records else None


def _latest(instance: DagsterInstance, asset: str, partition: str):
    materialization = _latest_or_none(instance, asset, partition)
    assert materialization is not None, f"{asset} was never materialized for {partition}"
    return materialization


def test_first_batch_trains_and_deploys_from_scratch(outcomes: list[BatchOutcome]) -> None:
    first = outcomes[0]
    assert first.success and first.retrained and first.strategy == "full_retrain"
    assert first.deployed_version == "v0001" and first.serving_version == "v0001"


def test_no_drift_batch_skips_retraining_and_everything_after(outcomes, processed_instance) -> None:
    instance = processed_instance
    quiet = outcomes[1]
    assert quiet.success and not quiet.retrained and quiet.drifted_share is not None
    assert quiet.drifted_share < 0.3 and quiet.served_auc is not None and quiet.served_auc > 0.7
    skipped = {event.step_key for event in instance.all_logs(quiet.run_id, of_type=DagsterEventType.STEP_SKIPPED)}
    assert skipped == {"model_evaluation", "compressed_model", "model_evaluation_quality_floor", "deployed_model"}
    materialized = {
        e.asset_materialization.asset_key.to_user_string()
        for e in instance.all_logs(quiet.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {"ingested_batch", "validated_batch", "drift_report", "predictions"}


def test_drifted_batch_warm_starts_and_is_promoted(outcomes, processed_workspace) -> None:
    workspace = processed_workspace
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


def test_drift_report_names_columns_and_saves_html(outcomes, processed_instance) -> None:
    metadata = _latest(processed_instance, "drift_report", outcomes[2].batch).metadata
    assert "monthly_charges" in metadata["top_drifted_columns"].value
    assert metadata["retrain_required"].value is True
    with open(metadata["report_path"].value, encoding="utf-8") as report:
        assert "<html" in report.read(2000).lower()


def test_every_asset_materialization_carries_measured_energy(outcomes, processed_workspace, processed_instance) -> None:
    instance = processed_instance
    assert defs.resolve_job_def("energy_ledger_job").execute_in_process(instance=instance).success
    # The HTML report is on demand: render the first batch's, as `green-pipeline report` does.
    report = defs.resolve_job_def("drift_report_html_job")
    config = processed_workspace.config()
    assert report.execute_in_process(run_config=config, instance=instance, partition_key=outcomes[0].batch).success
    asset_keys = {key for assets_def in defs.assets for key in assets_def.keys}
    for key in asset_keys:
        records = instance.fetch_materializations(key, limit=100).records
        assert records, f"{key.to_user_string()} was never materialized"
        for record in records:
            metadata = record.asset_materialization.metadata
            missing = [field for field in ENERGY_FIELDS if field not in metadata]
            assert not missing, f"{key.to_user_string()} lacks {missing}"
            assert metadata["energy_kwh"].value > 0
            assert "country_iso_code" not in metadata and "world average" in metadata["energy_method"].value


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


def test_bad_batch_fails_with_the_file_named_and_keeps_the_model(
    outcomes, processed_workspace, processed_instance
) -> None:
    workspace, instance = processed_workspace, processed_instance
    bad = "batch-2026-01-04.csv"
    (workspace.root / "data" / bad).write_text("tenure_months,churned\nabc,1\n")
    outcome = next(process_batches(defs, instance, [bad], workspace.config()))
    assert not outcome.success
    assert bad in outcome.error and "monthly_charges" in outcome.error
    assert ModelStore(workspace.store_url).current_version() == "v0002"


def test_predictions_come_from_the_serving_model_and_repeat_rows_hit_the_cache(
    outcomes, processed_workspace, processed_instance
) -> None:
    workspace, instance = processed_workspace, processed_instance
    assert _latest_or_none(instance, "predictions", workspace.batches[0]) is None
    metadata = _latest(instance, "predictions", workspace.batches[1]).metadata
    assert metadata["model_version"].value == "v0001" and metadata["rows_scored"].value == 3000
    # The drift step scored the batch once, for its quality check, and predictions read those scores.
    assert metadata["rows_computed_by_drift_step"].value == 3000 and metadata["rows_computed"].value == 0
    assert metadata["cache_hit_rate"].value == 1.0 and metadata["energy_per_1k_predictions_kwh"].value > 0

    job = defs.resolve_job_def("monitoring_job")
    rerun = job.execute_in_process(run_config=workspace.config(), instance=instance, partition_key=workspace.batches[1])
    assert rerun.success
    again = _latest(instance, "predictions", workspace.batches[1])
    assert again.metadata["model_version"].value == "v0002"
    assert again.metadata["rows_computed_by_drift_step"].value == 3000

    repeat = job.execute_in_process(
        run_config=workspace.config(), instance=instance, partition_key=workspace.batches[1]
    )
    assert repeat.success
    cached = _latest(instance, "predictions", workspace.batches[1])
    assert cached.metadata["rows_computed_by_drift_step"].value == 0
    assert cached.metadata["cache_hit_rate"].value == 1.0 and cached.metadata["rows_computed"].value == 0


def test_the_quality_check_judges_the_champion_on_the_very_scores_predictions_serve(
    processed_workspace, processed_instance
) -> None:
    workspace, instance = processed_workspace, processed_instance
    batch = workspace.batches[2]
    drift = _latest(instance, "drift_report", batch).metadata
    served = pd.read_parquet(_latest(instance, "predictions", batch).metadata["artifact_url"].value)
    rows = pd.read_parquet(_latest(instance, "validated_batch", batch).metadata["artifact_url"].value)
    label = ModelStore(workspace.store_url).load(drift["champion_version"].value).schema.label
    assert drift["champion_rows_scored"].value == len(rows) == len(served) and "pooled_batches" not in drift
    assert drift["champion_auc"].value == pytest.approx(roc_auc_score(rows[label], served["score"]), abs=1e-12)
