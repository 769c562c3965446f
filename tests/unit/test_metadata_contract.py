"""The event log's contract: what an asset writes is what the ledger, runner, sensors and checks read back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from dagster import AssetMaterialization, build_sensor_context, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.assets.jobs import energy_ledger_job, monitoring_job, retraining_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.energy.measurement import EnergyReport, EnergyStatus, MeasuredSum, complete_sum
from green_pipeline.errors import EventLogError
from green_pipeline.orchestration.metadata import (
    DRIFT_REPORT,
    ENERGY_LEDGER,
    MONITORING_STEPS,
    PROJECT_ASSETS,
    RETRAINING_STEPS,
    CompressionRecord,
    DeploymentRecord,
    DriftDecision,
    EvaluationRecord,
    LedgerRecord,
    MetadataRecord,
    ScoringRecord,
    StepEnergy,
    TrainingRecord,
    energy_figure,
)
from green_pipeline.orchestration.resources import CarbonAwareScheduling
from green_pipeline.sensors.drift import drift_retraining_sensor

DRIFT = DriftDecision(
    retrain_required=True,
    decision="drifted share 0.40 >= threshold 0.30: refit",
    drift_threshold=0.3,
    drifted_columns=4,
    columns_tested=10,
    reference_rows=1200,
    current_rows=2000,
    champion_version="v0003",
    drifted_share=0.4,
    champion_auc=0.71,
    champion_auc_drop=0.06,
)
RECORDS: list[MetadataRecord] = [
    DRIFT,
    TrainingRecord(strategy="refit", trees=120, new_trees=0, train_rows=1200, valid_auc=0.8, parent_version="v0003"),
    CompressionRecord(technique="prefix_60", engine="lightgbm", test_auc=0.79),
    DeploymentRecord(
        version="v0004",
        promoted=True,
        decision="promoted",
        reason="challenger AUC 0.7900 vs champion 0.7100",
        test_auc=0.79,
        auc_gain=0.08,
        auc_gain_baseline="champion v0003 on the same test rows",
        quality_per_kwh_status="estimated",
        serving_version="v0004",
        production_energy_kwh=2e-5,
        quality_per_kwh=4000.0,
        energy_per_1k_predictions_kwh=3e-9,
    ),
    ScoringRecord(
        model_version="v0003",
        rows_scored=2000,
        rows_computed=500,
        cache_hits=1500,
        cache_hit_rate=0.75,
        scoring_duration_s=0.2,
        energy_per_1k_predictions_kwh=4e-9,
    ),
    LedgerRecord(
        total_energy_kwh=3e-4,
        total_emissions_kg_co2eq=1.4e-4,
        unmeasured_steps=1,
        batches=3,
        retrains=1,
        skipped_retrains=2,
        avoided_energy_kwh=2e-4,
        skipped_retrains_without_estimate=0,
        max_run_energy_kwh=2.5e-4,
        wasted_retrains=1,
        wasted_retrain_energy_kwh=1e-4,
    ),
    EvaluationRecord(
        challenger_auc=0.79,
        challenger_auc_lower=0.75,
        challenger_auc_upper=0.83,
        confidence=0.95,
        test_rows=400,
        champion_version="v0003",
        champion_auc=0.71,
        champion_auc_lower=0.66,
        champion_auc_upper=0.76,
        auc_gain=0.08,
        auc_gain_lower=0.05,
        auc_gain_upper=0.11,
    ),
]


def _event_log(record: MetadataRecord) -> Mapping[str, Any]:
    """The metadata as Dagster stores it (``MetadataValue`` objects), the way the ledger reads it back."""
    return AssetMaterialization(record.asset, metadata=record.as_metadata()).metadata


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_reads_back_what_its_asset_wrote(record: MetadataRecord) -> None:
    assert type(record).from_metadata(_event_log(record)) == record


def test_an_absent_version_is_written_none_and_read_back_as_absent() -> None:
    first = DriftDecision(
        retrain_required=True,
        decision="no model is deployed yet",
        drift_threshold=0.3,
        drifted_columns=0,
        columns_tested=0,
        reference_rows=0,
        current_rows=2000,
    )

    metadata = first.as_metadata()

    assert metadata["champion_version"] == "none"  # the UI says nothing was serving
    assert "drifted_share" not in metadata and "champion_auc" not in metadata  # absent figures are not invented
    assert DriftDecision.from_metadata(_event_log(first)) == first


def test_an_unmeasured_energy_figure_is_said_under_its_unitless_key_never_zeroed() -> None:
    scoring = ScoringRecord("v0003", 2000, 2000, 0, 0.0, 0.2, energy_per_1k_predictions_kwh=None)

    metadata = scoring.as_metadata()

    assert metadata["energy_per_1k_predictions"] == EnergyStatus.UNMEASURED
    assert "energy_per_1k_predictions_kwh" not in metadata  # the key the UI plots only ever holds numbers
    assert ScoringRecord.from_metadata(_event_log(scoring)).energy_per_1k_predictions_kwh is None
    assert energy_figure("cleanest_region_emissions_kg_co2eq", None) == {"cleanest_region_emissions": "unmeasured"}
    assert energy_figure("total_energy_kwh", 0.0) == {"total_energy_kwh": 0.0}


def test_a_materialization_missing_a_field_names_the_asset_and_the_field() -> None:
    written = DRIFT.as_metadata()
    del written["retrain_required"]

    with pytest.raises(EventLogError, match=r"drift_report materialization has no retrain_required"):
        DriftDecision.from_metadata(written)


def test_step_energy_reads_what_the_energy_report_wrote() -> None:
    measured = EnergyReport(
        status=EnergyStatus.ESTIMATED,
        duration_s=1.5,
        method="estimated: test",
        energy_kwh=2e-6,
        emissions_kg_co2eq=1e-7,
    )
    unmeasured = EnergyReport(
        status=EnergyStatus.UNMEASURED, duration_s=0.3, method="unmeasured", unmeasured_reason="x"
    )

    assert StepEnergy.from_metadata(AssetMaterialization("a", metadata=measured.as_metadata()).metadata) == StepEnergy(
        EnergyStatus.ESTIMATED, 2e-6, 1e-7, 1.5
    )
    assert StepEnergy.from_metadata(unmeasured.as_metadata()) == StepEnergy(EnergyStatus.UNMEASURED, None, None, 0.3)
    # A materialization without energy metadata (not metered) counts as an unmeasured step, never as zero.
    assert StepEnergy.from_metadata({"rows": 10}) == StepEnergy(EnergyStatus.UNMEASURED, None, None, None)


def test_unmeasured_parts_are_counted_apart_and_a_complete_total_needs_every_part() -> None:
    mixed = MeasuredSum.of([1e-3, None, 2e-3])

    assert (mixed.total, mixed.unmeasured, mixed.parts) == (pytest.approx(3e-3), 1, 3)
    assert mixed.complete is None and mixed.partial == pytest.approx(3e-3)
    assert complete_sum([1e-3, 2e-3]) == pytest.approx(3e-3)
    assert complete_sum([]) is None  # no part is no figure, not zero
    assert MeasuredSum.of([None, None]).partial is None


def test_every_asset_and_input_is_a_key_of_the_contract() -> None:
    """Assets declare their key and inputs from the contract: a renamed parameter cannot point at a missing asset."""
    keys = {key for assets_def in defs.assets for key in assets_def.keys}
    inputs = {key for assets_def in defs.assets for key in assets_def.dependency_keys}

    assert keys == set(PROJECT_ASSETS) and len(PROJECT_ASSETS) == len(keys)
    assert inputs <= keys
    assert set(monitoring_job.selection.resolve(defs.resolve_asset_graph())) == set(MONITORING_STEPS)
    assert set(retraining_job.selection.resolve(defs.resolve_asset_graph())) == set(RETRAINING_STEPS)
    assert set(energy_ledger_job.selection.resolve(defs.resolve_asset_graph())) == {ENERGY_LEDGER}


def test_the_drift_sensor_retrains_what_the_reports_decided_and_passes_over_foreign_ones() -> None:
    keep = dataclasses.replace(DRIFT, retrain_required=False, decision="drifted share 0.10 < threshold 0.30")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(batch_partitions.name, ["a.parquet", "b.parquet", "c.parquet"])
        for partition, metadata in [
            ("a.parquet", {"rows": 10}),  # not written by this code location's drift_report
            ("b.parquet", DRIFT.as_metadata()),
            ("c.parquet", keep.as_metadata()),
        ]:
            instance.report_runless_asset_event(
                AssetMaterialization(DRIFT_REPORT, partition=partition, metadata=metadata)
            )
        carbon = {"carbon_aware": CarbonAwareScheduling()}

        result = drift_retraining_sensor(build_sensor_context(instance=instance, resources=carbon))
        again = drift_retraining_sensor(build_sensor_context(instance=instance, cursor=result.cursor, resources=carbon))

    assert [request.partition_key for request in result.run_requests] == ["b.parquet"]
    assert again.run_requests == []  # the cursor moved past the foreign report too
