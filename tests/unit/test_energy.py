from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from codecarbon.core import cpu as codecarbon_cpu
from codecarbon.external.hardware import CPU, MODE_CPU_LOAD

from green_pipeline.energy.measurement import JOULES_PER_KWH, EnergySettings, EnergyStatus, measure_energy
from green_pipeline.energy.power_model import power_model

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


def cpu_work(rounds: int = 60_000) -> str:
    digest = b""
    for i in range(rounds):
        digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
    return digest.hex()


def parallel_work(rounds: int = 250) -> None:
    """Hashes 1 MB buffers, which releases the GIL: two threads doing this can run at once on two cores."""
    block = bytes(2**20)
    for _ in range(rounds):
        hashlib.sha256(block).digest()


@pytest.fixture
def cold_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp directory without the machine's cached power model, as on a freshly booted machine."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_measured_block_reports_energy_and_carbon() -> None:
    settings = EnergySettings(country_iso_code="FRA")
    cpu_before = time.process_time()
    with measure_energy(settings) as measurement:
        assert measurement.report is None
        result = cpu_work()
    cpu_seconds = time.process_time() - cpu_before

    report = measurement.report
    assert len(result) == 64
    assert report.status == EnergyStatus.ESTIMATED  # no RAPL counters on this kind of machine
    assert report.has_figures
    assert report.energy_kwh > 0
    assert report.energy_kwh == pytest.approx(report.cpu_energy_kwh + report.ram_energy_kwh)
    assert report.emissions_kg_co2eq > 0
    assert report.country_iso_code == "FRA"
    assert report.carbon_intensity_g_per_kwh == pytest.approx(report.emissions_kg_co2eq * 1000 / report.energy_kwh)
    assert report.duration_s > 0
    assert report.gpu_energy_kwh == 0.0
    # CPU: this process's CPU seconds at codecarbon's watts per thread (psutil ticks are 10 ms).
    model = power_model("FRA", None, None)
    charged_cpu_seconds = report.cpu_energy_kwh * JOULES_PER_KWH / model.cpu_w_per_thread
    assert charged_cpu_seconds == pytest.approx(cpu_seconds, abs=0.03)
    # RAM: a share of the machine's RAM power, never all of it.
    ram_watts = report.ram_energy_kwh * JOULES_PER_KWH / report.duration_s
    assert 0 < ram_watts < model.ram_power_w * psutil.Process().memory_info().rss / psutil.virtual_memory().total * 2
    assert "codecarbon" in report.method and "Not attributed: idle power" in report.method
    assert report.unmeasured_reason is None
    metadata = report.as_metadata()
    assert set(metadata) >= METADATA_KEYS
    assert metadata["energy_status"] == "estimated"
    assert "energy_unmeasured_reason" not in metadata


def test_cpu_energy_is_what_codecarbons_process_mode_reports_for_the_same_work() -> None:
    """codecarbon's process-mode CPU model, sampled over the very window of the block, charges the same energy.

    Its tracker is not the reference: it starts and stops outside the block and spends CPU of its own in between,
    which a busy machine stretches. Its CPU model started right before the block and sampled right after it sees
    the same CPU seconds, whatever else runs on the machine.
    """
    model = power_model("FRA", None, None)
    reference = CPU(
        output_dir=".", mode=MODE_CPU_LOAD, model=model.cpu_model, tdp=model.cpu_power_w, tracking_mode="process"
    )
    reference.start()
    window_start = time.perf_counter()
    with measure_energy(EnergySettings()) as measurement:
        cpu_work(400_000)
    codecarbon_watts = reference.total_power().W
    codecarbon_kwh = codecarbon_watts * (time.perf_counter() - window_start) / JOULES_PER_KWH

    assert codecarbon_kwh == pytest.approx(measurement.report.cpu_energy_kwh, rel=0.1)


def test_disabled_measurement_reports_unmeasured_without_figures() -> None:
    with measure_energy(EnergySettings(enabled=False)) as measurement:
        result = cpu_work()

    report = measurement.report
    assert len(result) == 64
    assert report.status == EnergyStatus.UNMEASURED
    assert not report.has_figures
    assert report.energy_kwh is None
    assert report.unmeasured_reason == "energy measurement is disabled"
    metadata = report.as_metadata()
    assert "energy_kwh" not in metadata
    assert "emissions_kg_co2eq" not in metadata
    assert metadata["energy_unmeasured_reason"] == "energy measurement is disabled"
    assert metadata["duration_s"] > 0


def test_a_power_model_that_cannot_be_detected_does_not_stop_the_work(
    cold_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: codecarbon_cpu.TDP) -> None:
        raise RuntimeError("cpuinfo cannot read this CPU")

    monkeypatch.setattr(codecarbon_cpu.TDP, "__init__", refuse)
    ran = []

    with measure_energy(EnergySettings()) as measurement:
        ran.append(cpu_work())

    assert len(ran) == 1
    report = measurement.report
    assert report.status == EnergyStatus.UNMEASURED
    assert report.energy_kwh is None
    assert "RuntimeError: cpuinfo cannot read this CPU" in report.unmeasured_reason
    assert "energy_kwh" not in report.as_metadata()


def test_a_process_that_cannot_be_read_at_the_end_is_reported_unmeasured(monkeypatch: pytest.MonkeyPatch) -> None:
    with measure_energy(EnergySettings()) as measurement:
        cpu_work()
        monkeypatch.setattr(psutil.Process, "cpu_times", lambda self: (_ for _ in ()).throw(psutil.AccessDenied()))

    assert measurement.report.status == EnergyStatus.UNMEASURED
    assert "psutil could not read this process at the end: AccessDenied" in measurement.report.unmeasured_reason
    monkeypatch.undo()
    with measure_energy(EnergySettings()) as after:
        cpu_work()
    assert after.report.has_figures  # the process-wide meter carries on


def test_an_error_in_the_measured_body_propagates_and_still_leaves_a_report() -> None:
    with pytest.raises(ValueError, match="training diverged"), measure_energy(EnergySettings()) as measurement:
        raise ValueError("training diverged")

    assert measurement.report is not None
    assert measurement.report.status == EnergyStatus.ESTIMATED


def test_blocks_open_at_once_on_two_threads_share_the_process_cpu_between_them() -> None:
    """Two blocks open at once on two threads are charged, together, the process's CPU time of that window, at the
    rate one block alone is charged. The same work's CPU time itself is not compared between the two runs: on a busy
    machine two threads at once take more CPU seconds for it than one thread at a time (the cores' caches and memory
    bandwidth are shared), which made an earlier version of this test fail under load."""

    def measured(reports: list) -> None:
        with measure_energy(EnergySettings()) as measurement:
            parallel_work()
        reports.append(measurement.report)

    alone: list = []
    cpu_started = time.process_time()
    measured(alone)
    kwh_per_cpu_s = alone[0].cpu_energy_kwh / (time.process_time() - cpu_started)
    together: list = []
    threads = [threading.Thread(target=measured, args=(together,)) for _ in range(2)]
    cpu_started = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together_cpu_s = time.process_time() - cpu_started

    assert sum(r.cpu_energy_kwh for r in together) == pytest.approx(together_cpu_s * kwh_per_cpu_s, rel=0.1)
    assert all("shared its process with 1 block(s)" in r.method for r in together)
    assert not any("shared" in r.method for r in alone)


def test_a_nested_block_is_part_of_the_outer_one() -> None:
    with measure_energy(EnergySettings()) as outer:
        cpu_work()
        with measure_energy(EnergySettings()) as inner:
            cpu_work()

    assert 0 < inner.report.energy_kwh < outer.report.energy_kwh
    assert "shared" not in outer.report.method


def test_the_power_model_is_detected_once_per_machine_boot_not_per_process(cold_cache: Path) -> None:
    with measure_energy(EnergySettings(country_iso_code="DEU")) as first:
        pass
    assert first.report.has_figures and list(cold_cache.glob("green_pipeline-power-model-*.json"))

    probe = (
        "import sys\n"
        "from green_pipeline.energy.measurement import EnergySettings, measure_energy\n"
        "with measure_energy(EnergySettings(country_iso_code='DEU')) as m: pass\n"
        "print(m.report.status, m.report.carbon_intensity_g_per_kwh, 'codecarbon.core.cpu' in sys.modules)\n"
    )
    env = {"TMPDIR": str(cold_cache), "PATH": "/usr/bin:/bin"}
    output = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    status, intensity, detected_again = output.split()
    assert status == EnergyStatus.ESTIMATED
    assert float(intensity) == pytest.approx(first.report.carbon_intensity_g_per_kwh)
    assert detected_again == "False"  # codecarbon's 1.5 s hardware detection was not run again


def test_a_cpu_power_setting_replaces_codecarbons_guess(cold_cache: Path) -> None:
    with measure_energy(EnergySettings(cpu_tdp_w=64.0)) as measurement:
        cpu_work()

    assert "set by energy.cpu_tdp_w" in measurement.report.method
    assert f"{64.0 / psutil.cpu_count():.2f} W per thread" in measurement.report.method


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_lightgbm_threads_wait_passively_unless_the_environment_says_otherwise(given, expected) -> None:
    """Set by the package before LightGBM's OpenMP runtime loads (it reads the variable once, at load)."""
    probe = "import os, green_pipeline; print(os.environ['OMP_WAIT_POLICY'])"
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected
