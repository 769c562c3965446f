"""The gate's memory through real Dagster runs: small batches pooled, trained, tested and published together, and a
wasted retrain making the same drift wait for stronger evidence, all read back from the event log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.orchestration.metadata import DriftDecision
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration

#: 600 rows a batch, under the default policy.min_rows_for_decision (1000): every batch after the first is pooled
#: with the next. Day 0 trains the first model; from day 2 the price rise shifts the columns the model uses.
STREAM = StreamSpec(days=5, rows_per_day=600, covariate_shift_days=(2,), concept_drift_days=())


def _metadata(instance: DagsterInstance, asset: str, batch: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[batch]), limit=1
    ).records
    assert records, f"{asset} was never materialized for {batch}"
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def test_small_batches_are_pooled_and_a_wasted_retrain_asks_for_more_evidence(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    batches = write_stream(STREAM, str(tmp_path / "data"))
    settings: dict[str, dict[str, Any]] = {
        "dataset": {"data_url": str(tmp_path / "data")},
        "model_store": {"store_url": str(tmp_path / "store")},
        "artifacts": {"base_url": str(tmp_path / "artifacts")},
    }
    [first] = process_batches(defs, instance, batches[:1], run_config(settings))
    assert first.success and first.deployed_version == "v0001"

    # From here no challenger can reach the floor: every retrain is trained and thrown away (wasted).
    rejecting = run_config({**settings, "check_thresholds": {"quality_floor_auc": 0.99}})
    outcomes = list(process_batches(defs, instance, batches[1:], rejecting))

    assert [o.success for o in outcomes] == [True] * 4
    assert [o.retrained for o in outcomes] == [False, True, False, False]
    pooled = DriftDecision.from_metadata(_metadata(instance, "drift_report", batches[1]))
    assert pooled.outcome == "pooled" and not pooled.retrain_required
    assert "600 labelled rows" in pooled.decision and "policy.min_rows_for_decision 1000" in pooled.decision

    judged = DriftDecision.from_metadata(_metadata(instance, "drift_report", batches[2]))
    assert judged.outcome == "retrain" and judged.trigger == "drift"
    assert judged.pooled_batches == [batches[1]] and judged.pooled_rows == 600 and judged.labelled_rows == 1200
    training = _metadata(instance, "retrained_model", batches[2])
    assert training["train_rows"] - training["reference_rows"] == 2 * 360  # 60 % of each pooled batch
    # Tested on 20 % of each pooled batch, not on the last batch's 120 rows alone, and published with all their rows.
    assert _metadata(instance, "model_evaluation", batches[2])["test_rows"] == 2 * 120
    assert _metadata(instance, "deployed_model", batches[2])["promoted"] is False
    assert len(ModelStore(str(tmp_path / "store"), "churn").load("v0002").reference) == 1200

    after_waste = _metadata(instance, "drift_report", batches[4])
    decision = DriftDecision.from_metadata(after_waste)
    assert decision.drift_signal and not decision.retrain_required and decision.pooled_batches == [batches[3]]
    assert after_waste["wasted_drift_retrains"] == 1 and after_waste["drift_patience"] == 2
    assert after_waste["drift_streak"] == 1 and "1 of 2 consecutive drifted batches" in decision.decision
