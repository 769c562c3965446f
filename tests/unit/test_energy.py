from __future__ import annotations

import hashlib

import codecarbon
import pytest

from green_pipeline.energy import MEASURED, UNMEASURED, EnergySettings, measure_energy

METADATA_KEYS = {
    "energy_kwh",
    "emissions_kg_co2eq",
    "duration_s",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "gpu_energy_kwh",
    "country_iso_code",
    "carbon_intensity_g_per_kwh",
    "energy_method",
}


def cpu_work() -> str:
    digest = b""
    for i in range(60_000):
        digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
    return digest.hex()


def test_measured_block_reports_energy_and_carbon() -> None:
    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        assert measurement.report is None
        result = cpu_work()

    report = measurement.report
    assert len(result) == 64
    assert report.status == MEASURED
    assert report.measured
    assert report.energy_kwh > 0
    assert report.emissions_kg_co2eq > 0
    assert report.country_iso_code == "FRA"
    assert report.carbon_intensity_g_per_kwh > 0
    assert report.energy_kwh >= report.cpu_energy_kwh
    assert report.duration_s > 0
    assert "codecarbon" in report.method
    assert report.unmeasured_reason is None
    metadata = report.as_metadata()
    assert set(metadata) >= METADATA_KEYS
    assert metadata["energy_status"] == MEASURED
    assert "energy_unmeasured_reason" not in metadata


def test_disabled_measurement_reports_unmeasured_without_figures() -> None:
    with measure_energy(EnergySettings(enabled=False)) as measurement:
        result = cpu_work()

    report = measurement.report
    assert len(result) == 64
    assert report.status == UNMEASURED
    assert not report.measured
    assert report.energy_kwh is None
    assert report.unmeasured_reason == "energy measurement is disabled"
    metadata = report.as_metadata()
    assert "energy_kwh" not in metadata
    assert "emissions_kg_co2eq" not in metadata
    assert metadata["energy_unmeasured_reason"] == "energy measurement is disabled"
    assert metadata["duration_s"] > 0


def test_a_tracker_that_cannot_start_does_not_stop_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_to_start(self: codecarbon.OfflineEmissionsTracker) -> None:
        raise RuntimeError("no power counters on this host")

    monkeypatch.setattr(codecarbon.OfflineEmissionsTracker, "start", refuse_to_start)
    ran = []

    with measure_energy(EnergySettings()) as measurement:
        ran.append(cpu_work())

    assert len(ran) == 1
    report = measurement.report
    assert report.status == UNMEASURED
    assert report.energy_kwh is None
    assert "RuntimeError: no power counters on this host" in report.unmeasured_reason
    assert "energy_kwh" not in report.as_metadata()


def test_an_error_in_the_measured_body_propagates_and_still_leaves_a_report() -> None:
    with pytest.raises(ValueError, match="training diverged"), measure_energy(EnergySettings()) as measurement:
        raise ValueError("training diverged")

    assert measurement.report is not None
    assert measurement.report.status == MEASURED
