"""Carbon-aware deferral in the drift sensor, on a fixed intensity profile and real drift reports.

The sensor's clock is the ``now`` argument of ``retraining_requests``; the reports come from real
monitoring runs (day 2 of the small stream has a covariate shift that asks for a retrain).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, build_sensor_context, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import run_config
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.carbon.intensity import floor_hour
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.orchestration.resources import CarbonAwareScheduling
from green_pipeline.sensors.drift import retraining_requests

pytestmark = pytest.mark.integration
ZONE = "TEST-GRID"
BASE, AT_REPORT, CHEAPEST, ALMOST = 300.0, 400.0, 100.0, 200.0
HOURS_TO_CHEAPEST = 5
#: Day 0 trains the first model, day 1 is like it, day 2 starts a covariate shift.
STREAM = StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())


@dataclass(frozen=True)
class Reports:
    root: Path
    instance: DagsterInstance
    drifted_batch: str
    storage_id: int
    reported_at: datetime
    profile: Path

    @property
    def cheapest_hour(self) -> datetime:
        return floor_hour(self.reported_at) + timedelta(hours=HOURS_TO_CHEAPEST)

    def carbon(self, **fields: object) -> CarbonAwareScheduling:
        settings: dict = {"enabled": True, "zone": ZONE, "profile_path": str(self.profile), "deadline_hours": 12.0}
        return CarbonAwareScheduling(**{**settings, "expected_duration_hours": 1.0, **fields})

    def tick(self, carbon: CarbonAwareScheduling, now: datetime, cursor: str | None = None):
        with build_sensor_context(instance=self.instance, cursor=cursor) as context:
            return retraining_requests(context, carbon, now)


def _config(root: Path, **carbon_aware: object) -> dict:
    return run_config(
        {
            "dataset": {"data_url": str(root / "data")},
            "model_store": {"store_url": str(root / "store")},
            "artifacts": {"base_url": str(root / "artifacts")},
            "carbon_aware": carbon_aware,
        }
    )


def _daily_profile(path: Path, reported_at: datetime) -> None:
    """Flat, dearer at the report's hour, cheapest 5 h later, nearly as cheap the hour before."""
    values = dict.fromkeys(range(24), BASE)
    report_hour = reported_at.hour
    values[report_hour] = AT_REPORT
    values[(report_hour + HOURS_TO_CHEAPEST) % 24] = CHEAPEST
    values[(report_hour + HOURS_TO_CHEAPEST - 1) % 24] = ALMOST
    rows = "".join(f"{ZONE},{hour},{value}\n" for hour, value in values.items())
    path.write_text("zone,hour,g_co2_per_kwh\n" + rows)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    root = tmp_path_factory.mktemp("carbon")
    batches = write_stream(STREAM, str(root / "data"))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(batch_partitions.name, batches)
        config = _config(root)
        full, monitoring = defs.resolve_job_def("green_pipeline_job"), defs.resolve_job_def("monitoring_job")
        assert full.execute_in_process(run_config=config, instance=instance, partition_key=batches[0]).success
        for batch in batches[1:]:
            assert monitoring.execute_in_process(run_config=config, instance=instance, partition_key=batch).success
        drifted = batches[2]
        record = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("drift_report"), asset_partitions=[drifted]), limit=1
        ).records[0]
        assert record.asset_materialization.metadata["retrain_required"].value is True
        reported_at = datetime.fromtimestamp(record.timestamp, UTC)
        _daily_profile(root / "profile.csv", reported_at)
        yield Reports(root, instance, drifted, record.storage_id, reported_at, root / "profile.csv")


def test_a_mild_drift_waits_for_the_cheapest_hour_then_runs_and_records_its_carbon(reports: Reports) -> None:
    carbon = reports.carbon(urgent_drift_share=0.99, urgent_auc_drop=0.99)
    seen = reports.reported_at + timedelta(minutes=1)
    first = reports.tick(carbon, seen)
    assert first.run_requests == []
    assert [d["window_start"] for d in json.loads(first.cursor)["pending"]] == [reports.cheapest_hour.isoformat()]

    just_before = reports.tick(carbon, reports.cheapest_hour - timedelta(minutes=1), first.cursor)
    assert just_before.run_requests == []
    at_window = reports.tick(carbon, reports.cheapest_hour, just_before.cursor)
    [request] = at_window.run_requests
    assert (request.partition_key, request.run_key) == (reports.drifted_batch, f"retrain:{reports.storage_id}")
    assert {k.rsplit("/", 1)[1]: v for k, v in request.tags.items()} == {
        "carbon_decision": "deferred",
        "carbon_zone": ZONE,
        "carbon_window_start": reports.cheapest_hour.isoformat(),
        "carbon_expected_g_per_kwh": "100.0",
        "carbon_request_g_per_kwh": "100.0",
        "carbon_report_g_per_kwh": "400.0",
    }
    later = reports.tick(carbon, reports.cheapest_hour + timedelta(hours=2), at_window.cursor)
    assert later.run_requests == [] and json.loads(later.cursor)["pending"] == []

    # The requested run, as the daemon would launch it: the retraining step records expected vs actual.
    config = _config(reports.root, profile_path=str(reports.profile), zone=ZONE)
    started_hour = datetime.now(UTC).hour
    result = defs.resolve_job_def("retraining_job").execute_in_process(
        run_config=config, instance=reports.instance, partition_key=reports.drifted_batch, tags=request.tags
    )
    assert result.success
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("retrained_model")[0].metadata.items()}
    profile = {int(h): float(v) for _, h, v in (line.split(",") for line in reports.profile.read_text().split()[1:])}
    assert metadata["carbon_expected_g_per_kwh"] == CHEAPEST and metadata["carbon_report_g_per_kwh"] == AT_REPORT
    actual = metadata["carbon_actual_g_per_kwh"]
    assert actual in {profile[started_hour], profile[datetime.now(UTC).hour]}  # the hour the run really started
    energy = sum(v for k, v in metadata.items() if k.startswith("attempt_") and k.endswith("_energy_kwh"))
    assert energy > 0
    assert metadata["co2_avoided_g"] == pytest.approx(energy * (AT_REPORT - actual))
    assert "retraining energy" in metadata["co2_avoided_basis"]


def test_an_urgent_drift_is_requested_at_once(reports: Reports) -> None:
    carbon = reports.carbon(urgent_drift_share=0.01)
    [request] = reports.tick(carbon, reports.reported_at + timedelta(minutes=1)).run_requests
    assert request.run_key == f"retrain:{reports.storage_id}"
    assert request.tags["green_pipeline/carbon_decision"] == "urgent"
    assert "urgent_drift_share 0.01" in request.tags["green_pipeline/carbon_reason"]


def test_a_provider_failure_never_delays_a_retrain(reports: Reports, tmp_path: Path) -> None:
    carbon = reports.carbon(urgent_drift_share=0.99, urgent_auc_drop=0.99, profile_path=str(tmp_path / "gone.csv"))
    result = reports.tick(carbon, reports.reported_at + timedelta(minutes=1))
    [request] = result.run_requests
    assert request.tags["green_pipeline/carbon_decision"] == "provider_failed"
    assert "gone.csv: cannot read the intensity profile" in request.tags["green_pipeline/carbon_reason"]
    assert json.loads(result.cursor)["pending"] == []
