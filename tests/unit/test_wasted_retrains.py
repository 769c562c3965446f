"""Wasted retrains (trained, not promoted) and their energy, read from an event log as the ledger reads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, instance_for_test

from green_pipeline.app.report import batch_kpi_row, rejection_lines, wasted_line
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.energy.measurement import EnergyReport, EnergyStatus
from green_pipeline.orchestration.ledger import batch_kpis, is_wasted_retrain, materializations, wasted_retrains
from green_pipeline.orchestration.metadata import (
    COMPRESSED_MODEL,
    DEPLOYED_MODEL,
    DRIFT_REPORT,
    MODEL_EVALUATION,
    RETRAINED_MODEL,
    DeploymentRecord,
    DriftDecision,
    TrainingRecord,
)

REJECTION = "rejected: challenger - champion AUC -0.0100 [-0.0400, 0.0200] at 95% ...: champion keeps serving"


def test_a_retrain_is_wasted_when_trained_and_not_promoted() -> None:
    assert is_wasted_retrain(retrained=True, promoted=False)
    assert is_wasted_retrain(retrained=True, promoted=None)  # trained, but its deployment never happened
    assert not is_wasted_retrain(retrained=True, promoted=True)
    assert not is_wasted_retrain(retrained=False, promoted=None)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def _step(instance: DagsterInstance, key: AssetKey, batch: str, kwh: float | None, **metadata: Any) -> None:
    status = EnergyStatus.UNMEASURED if kwh is None else EnergyStatus.ESTIMATED
    energy = EnergyReport(status=status, duration_s=1.0, method="test", energy_kwh=kwh, emissions_kg_co2eq=None)
    instance.report_runless_asset_event(
        AssetMaterialization(key, partition=batch, metadata={**energy.as_metadata(), **metadata})
    )


def _batch(
    instance: DagsterInstance, batch: str, retrain: bool, promoted: bool | None, kwh: list[float | None]
) -> None:
    """A batch's steps: its drift report, then (if it retrained) each retraining step that ran, at ``kwh`` each."""
    drift = DriftDecision(
        retrain_required=retrain,
        decision="test",
        drift_threshold=0.3,
        drifted_columns=3 if retrain else 0,
        columns_tested=10,
        reference_rows=1000,
        current_rows=1000,
        champion_version="v0001",
    )
    _step(instance, DRIFT_REPORT, batch, 1e-6, **drift.as_metadata())
    if not retrain:
        return
    training = TrainingRecord("warm_start", 100, 20, 600, 0.8, parent_version="v0001")
    steps = (RETRAINED_MODEL, MODEL_EVALUATION, COMPRESSED_MODEL, DEPLOYED_MODEL)
    for key, energy in zip(steps, kwh, strict=False):
        extra: dict[str, Any] = training.as_metadata() if key == RETRAINED_MODEL else {}
        if key == DEPLOYED_MODEL and promoted is not None:
            deployment = DeploymentRecord(
                version=f"v-{batch[0]}",
                promoted=promoted,
                decision="promoted" if promoted else "rejected",
                reason="promoted: ..." if promoted else REJECTION,
                test_auc=0.8,
                auc_gain=-0.01,
                auc_gain_baseline="champion v0001 on the same test rows",
                quality_per_kwh_status="estimated",
            )
            extra = deployment.as_metadata()
        _step(instance, key, batch, energy, **extra)


def test_the_ledger_counts_wasted_retrains_and_the_energy_of_their_retraining_steps(
    instance: DagsterInstance,
) -> None:
    batches = ["a.csv", "b.csv", "c.csv", "d.csv"]
    instance.add_dynamic_partitions(batch_partitions.name, batches)
    _batch(instance, "a.csv", retrain=True, promoted=True, kwh=[4e-4, 1e-5, 2e-4, 1e-5])
    _batch(instance, "b.csv", retrain=True, promoted=False, kwh=[3e-4, 1e-5, None, 1e-5])
    _batch(instance, "c.csv", retrain=True, promoted=None, kwh=[5e-4])  # failed after training
    _batch(instance, "d.csv", retrain=False, promoted=None, kwh=[])
    events = list(materializations(instance))

    wasted = wasted_retrains(events)
    rows = {row.batch: row for row in batch_kpis(events)}

    assert wasted.batches == ("b.csv", "c.csv") and wasted.count == 2 and wasted.retrains == 3
    assert wasted.share == pytest.approx(2 / 3)
    assert wasted.energy_kwh == pytest.approx(3e-4 + 1e-5 + 1e-5 + 5e-4)  # drift reports are not retraining
    assert wasted.unmeasured_steps == 1  # b's compression: counted apart, never guessed
    assert [batch for batch, row in rows.items() if row.wasted] == ["b.csv", "c.csv"]
    assert rows["b.csv"].decision == "rejected" and rows["b.csv"].reason == REJECTION
    assert rows["a.csv"].decision == "promoted" and rows["d.csv"].decision is None
    assert " rejected " in batch_kpi_row(rows["b.csv"])
    assert rejection_lines(rows.values()) == [f"  b.csv (v-b): {REJECTION}"]
    assert wasted_line(wasted) == (
        "Wasted retrains (trained, not promoted): 2 of 3 (67%), 0.8200+1? Wh spent retraining them"
    )


def test_no_retrain_means_no_waste_and_no_share(instance: DagsterInstance) -> None:
    instance.add_dynamic_partitions(batch_partitions.name, ["a.csv"])
    _batch(instance, "a.csv", retrain=False, promoted=None, kwh=[])

    wasted = wasted_retrains(list(materializations(instance)))

    assert (wasted.count, wasted.retrains, wasted.share, wasted.energy_kwh) == (0, 0, None, 0.0)
    assert wasted_line(wasted) == "Wasted retrains (trained, not promoted): 0, 0.0000 Wh spent retraining them"
