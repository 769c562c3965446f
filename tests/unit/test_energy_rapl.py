"""RAPL counters on a powercap tree written here: which zones are read, wraps, DRAM present or absent, and the
fallback to the estimate when a counter cannot be read. This machine has no RAPL, so nothing else exercises it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from green_pipeline.energy import meter as energy_meter
from green_pipeline.energy import rapl
from green_pipeline.energy.measurement import JOULES_PER_KWH, EnergySettings, EnergyStatus, measure_energy
from green_pipeline.energy.rapl import discover, share

RANGE_UJ = 262_143_328_850  # a real max_energy_range_uj (32-bit counter of 61 uJ units)
BUSY_S = 1000.0  # what the machine's CPUs did meanwhile, far more than this process: its share stays below 1
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_work(seconds: float = 0.2) -> None:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass


@dataclass
class Powercap:
    """A powercap tree and a /proc/stat as the kernel lays them out, with counters the test moves."""

    root: Path
    stat: Path

    def zone(self, name: str, label: str, energy_uj: int = 0) -> None:
        zone = self.root / name
        zone.mkdir()
        (zone / "name").write_text(f"{label}\n")
        (zone / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
        self.set(name, energy_uj)

    def set(self, name: str, energy_uj: int) -> None:
        _write_at_once(self.root / name / "energy_uj", f"{energy_uj}\n")

    def busy(self, seconds: float) -> None:
        """The machine's cpu line: user and system busy (half each), plus idle and iowait that never count."""
        half = round(seconds * TICKS / 2)
        line = f"{half} 0 {half} 987654 321 0 0 0 0 0\n"
        _write_at_once(self.stat, f"cpu  {line}cpu0 {line}")


def _write_at_once(path: Path, text: str) -> None:
    """As the kernel presents a counter: a reader (the meter's sampling thread) never sees a half-written value."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


@pytest.fixture
def powercap(tmp_path: Path) -> Powercap:
    tree = Powercap(tmp_path / "powercap", tmp_path / "stat")
    tree.root.mkdir()
    (tree.root / "intel-rapl").mkdir()  # the control type: no counter of its own
    tree.busy(5000.0)
    return tree


@pytest.fixture
def metered_here(powercap: Powercap, monkeypatch: pytest.MonkeyPatch) -> Powercap:
    """This process's meter starts again on the tree, reading only when a block opens and closes (exact shares)."""
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", powercap.root)
    monkeypatch.setattr(rapl, "PROC_STAT", powercap.stat)
    monkeypatch.setattr(energy_meter, "SAMPLE_INTERVAL_S", 3600.0)
    monkeypatch.setattr(energy_meter, "_meter", None)
    return powercap


def test_package_and_dram_counters_are_read_and_overlapping_zones_are_not(powercap: Powercap) -> None:
    powercap.zone("intel-rapl:0", "package-0")
    powercap.zone("intel-rapl:0:0", "core")
    powercap.zone("intel-rapl:0:1", "uncore")
    powercap.zone("intel-rapl:0:2", "dram")
    powercap.zone("intel-rapl:1", "psys")
    powercap.zone("intel-rapl-mmio:0", "package-0")  # the same package through MMIO: counting it would double

    found, _ = discover(powercap.root, powercap.stat)

    assert found is not None and found.has_dram
    assert [(d.name, d.counter.parent.name) for d in found.domains] == [
        ("package-0", "intel-rapl:0"),
        ("dram", "intel-rapl:0:2"),
    ]
    assert found.read().busy_s == pytest.approx(5000.0)


def test_a_counter_that_wrapped_is_counted_past_max_energy_range(powercap: Powercap) -> None:
    powercap.zone("intel-rapl:0", "package-0", RANGE_UJ - 2_000_000)
    powercap.zone("intel-rapl:0:2", "dram", 10_000_000)
    found, _ = discover(powercap.root, powercap.stat)
    assert found is not None
    start = found.read()
    powercap.set("intel-rapl:0", 3_000_000)  # 2 J to the top, then 3 J after wrapping to zero
    powercap.set("intel-rapl:0:2", 14_000_000)
    powercap.busy(5012.0)

    interval = found.between(start, found.read())

    assert interval.package_j == pytest.approx(5.0)
    assert interval.dram_j == pytest.approx(4.0)
    assert interval.busy_s == pytest.approx(12.0)


def test_a_step_is_charged_its_cpu_share_of_the_package_and_dram_energy(metered_here: Powercap) -> None:
    metered_here.zone("intel-rapl:0", "package-0", RANGE_UJ - 100_000_000)
    metered_here.zone("intel-rapl:0:2", "dram", 0)
    cpu_before = time.process_time()
    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        cpu_work()
        metered_here.set("intel-rapl:0", 400_000_000)  # wrapped: 500 J in all
        metered_here.set("intel-rapl:0:2", 50_000_000)  # 50 J
        metered_here.busy(5000.0 + BUSY_S)
    cpu_s = time.process_time() - cpu_before

    report = measurement.report
    assert report.status == EnergyStatus.MEASURED
    package_share = report.cpu_energy_kwh * JOULES_PER_KWH / 500.0
    assert package_share == pytest.approx(report.ram_energy_kwh * JOULES_PER_KWH / 50.0)  # one share for both
    assert package_share * BUSY_S == pytest.approx(cpu_s, abs=0.03)  # this process's CPU seconds / busy seconds
    assert report.energy_kwh == pytest.approx(report.cpu_energy_kwh + report.ram_energy_kwh)
    assert report.method.startswith("measured: RAPL counters (package-0, dram)")
    assert "RAM = the DRAM energy x the same share" in report.method
    assert report.as_metadata()["energy_status"] == "measured"


def test_without_a_dram_domain_only_the_package_is_counted(metered_here: Powercap) -> None:
    metered_here.zone("intel-rapl:0", "package-0", 0)  # as on AMD: no DRAM domain
    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        cpu_work()
        metered_here.set("intel-rapl:0", 500_000_000)
        metered_here.busy(5000.0 + BUSY_S)

    report = measurement.report
    assert report.status == EnergyStatus.MEASURED
    assert 0 < report.energy_kwh == report.cpu_energy_kwh < 500.0 / JOULES_PER_KWH
    assert report.ram_energy_kwh is None and "ram_energy_kwh" not in report.as_metadata()
    assert "RAM: no DRAM domain here, not counted" in report.method


def test_an_unreadable_counter_leaves_the_estimate(metered_here: Powercap) -> None:
    metered_here.zone("intel-rapl:0", "package-0", 0)
    (metered_here.root / "intel-rapl:0" / "energy_uj").unlink()
    (metered_here.root / "intel-rapl:0" / "energy_uj").mkdir()  # reading it fails, even as root

    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        cpu_work()

    report = measurement.report
    assert report.status == EnergyStatus.ESTIMATED and report.energy_kwh > 0
    assert "RAPL counters present but unreadable (IsADirectoryError" in report.method
    assert "TDP x CPU-time estimate" in report.method


def test_a_counter_lost_during_a_step_leaves_that_step_estimated(metered_here: Powercap) -> None:
    metered_here.zone("intel-rapl:0", "package-0", 0)
    with measure_energy(EnergySettings(country_iso_code="FRA")) as lost:
        cpu_work()
        (metered_here.root / "intel-rapl:0" / "energy_uj").unlink()
    metered_here.set("intel-rapl:0", 1_000_000)
    with measure_energy(EnergySettings(country_iso_code="FRA")) as after:
        cpu_work()
        metered_here.set("intel-rapl:0", 9_000_000)
        metered_here.busy(5000.0 + BUSY_S)

    assert lost.report.status == EnergyStatus.ESTIMATED and lost.report.energy_kwh > 0
    assert "a RAPL counter could not be read: FileNotFoundError" in lost.report.method
    assert after.report.status == EnergyStatus.MEASURED  # the next step reads the counter again


@pytest.mark.parametrize(
    ("process_cpu_s", "busy_s", "expected"),
    [(1.0, 4.0, 0.25), (2.0, 1.5, 1.0), (0.5, 0.0, 1.0), (0.0, 0.0, 0.0)],
)
def test_a_share_never_exceeds_the_whole(process_cpu_s: float, busy_s: float, expected: float) -> None:
    assert share(process_cpu_s, busy_s) == expected


def test_a_machine_without_powercap_says_so(tmp_path: Path) -> None:
    found, why = discover(tmp_path / "absent", tmp_path / "stat")
    assert found is None and why.startswith("no RAPL counters")
