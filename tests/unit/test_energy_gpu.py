"""GPU attribution on NVML calls faked here (this machine has no GPU): a device's energy is charged to a step only
when the step's process ran on it alone, and otherwise the figure is left out and said to be."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator

import pytest

from green_pipeline.energy import measurement as energy
from green_pipeline.energy.gpu import MJ_PER_KWH, GpuMeter, Nvml
from green_pipeline.energy.measurement import JOULES_PER_KWH, EnergySettings, measure_energy
from green_pipeline.energy.power_model import power_model

OURS, CHILD, OTHER = 1001, 1002, 2002


class FakeNvmlError(Exception):
    """Stands for pynvml.NVMLError."""


class Devices:
    """GPUs whose energy counters (mJ) and compute processes the test sets, seen through NVML's calls."""

    def __init__(self, count: int) -> None:
        self.energy_mj = [1_000_000] * count
        self.pids: list[set[int]] = [set() for _ in range(count)]
        self.lost = False

    def nvml(self) -> Nvml:
        return Nvml(
            device_count=lambda: len(self.energy_mj),
            device=lambda index: index,
            energy_mj=self._energy,
            compute_pids=lambda device: set(self.pids[device]),
            error=FakeNvmlError,
        )

    def _energy(self, device: object) -> int:
        if self.lost:
            raise FakeNvmlError("GPU is lost")
        return self.energy_mj[device]  # type: ignore[index]


def meter(devices: Devices, own: set[int] | None = None) -> GpuMeter:
    return GpuMeter(devices.nvml(), lambda: own or {OURS})


def test_a_device_the_step_used_alone_is_charged_its_delta() -> None:
    devices = Devices(1)
    devices.pids[0] = {OURS}
    gpu = meter(devices)
    opened = gpu.snapshot()
    devices.energy_mj[0] += 36_000  # 36 J

    charge = gpu.charge(opened)

    assert charge.energy_kwh == pytest.approx(36.0 / JOULES_PER_KWH)
    assert "NVML energy counter of device(s) 0" in charge.note


def test_a_step_that_starts_using_the_device_meanwhile_is_charged_too() -> None:
    devices = Devices(1)
    gpu = meter(devices, own={OURS, CHILD})
    opened = gpu.snapshot()
    devices.pids[0] = {CHILD}  # a child process of the step, listed at the end only
    devices.energy_mj[0] += 7_200

    assert gpu.charge(opened).energy_kwh == pytest.approx(7_200 / MJ_PER_KWH)


@pytest.mark.parametrize("other_at", ["open", "close"])
def test_another_process_on_the_device_leaves_the_gpu_unattributed(other_at: str) -> None:
    devices = Devices(1)
    devices.pids[0] = {OURS, OTHER} if other_at == "open" else {OURS}
    gpu = meter(devices)
    opened = gpu.snapshot()
    devices.pids[0] = {OURS} if other_at == "open" else {OURS, OTHER}
    devices.energy_mj[0] += 36_000

    charge = gpu.charge(opened)

    assert charge.energy_kwh is None
    assert charge.note == f"gpu not attributed: GPU 0 also ran process(es) [{OTHER}] meanwhile"


def test_only_the_devices_the_step_ran_on_count() -> None:
    devices = Devices(2)
    devices.pids = [{OURS}, {OTHER}]  # device 1 is another process's business, not this step's
    gpu = meter(devices)
    opened = gpu.snapshot()
    devices.energy_mj[0] += 1_000
    devices.energy_mj[1] += 900_000

    assert gpu.charge(opened).energy_kwh == pytest.approx(1_000 / MJ_PER_KWH)


def test_a_step_on_no_device_is_charged_nothing() -> None:
    devices = Devices(1)
    devices.pids[0] = {OTHER}
    gpu = meter(devices)
    opened = gpu.snapshot()
    devices.energy_mj[0] += 900_000

    assert gpu.charge(opened).energy_kwh == 0.0


def test_an_nvml_failure_leaves_the_gpu_unattributed() -> None:
    devices = Devices(1)
    devices.pids[0] = {OURS}
    gpu = meter(devices)
    opened = gpu.snapshot()
    devices.lost = True

    charge = gpu.charge(opened)

    assert charge.energy_kwh is None
    assert charge.note == "gpu not attributed: NVML could not be read (FakeNvmlError: GPU is lost)"


@pytest.fixture
def gpu_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[Devices]:
    """This machine as if it had one NVIDIA GPU, seen by measure_energy through the fake NVML."""
    devices = Devices(1)
    with_gpu = dataclasses.replace(power_model("FRA", None, None), gpu_present=True)
    monkeypatch.setattr(energy, "power_model", lambda *settings: with_gpu)
    monkeypatch.setattr(energy, "gpu_meter", lambda: (GpuMeter(devices.nvml(), lambda: {os.getpid()}), ""))
    yield devices


def test_a_step_alone_on_the_gpu_has_its_energy_in_the_total(gpu_here: Devices) -> None:
    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        gpu_here.pids[0] = {os.getpid()}
        gpu_here.energy_mj[0] += 360_000  # 360 J = 0.1 Wh

    report = measurement.report
    assert report.gpu_energy_kwh == pytest.approx(1e-4)
    assert report.energy_kwh == pytest.approx(report.cpu_energy_kwh + report.ram_energy_kwh + 1e-4)
    assert "GPU = NVML energy counter of device(s) 0" in report.method


def test_a_shared_gpu_is_left_out_of_the_total_and_said(gpu_here: Devices) -> None:
    with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
        gpu_here.pids[0] = {os.getpid(), OTHER}
        gpu_here.energy_mj[0] += 360_000

    report = measurement.report
    assert report.gpu_energy_kwh is None and "gpu_energy_kwh" not in report.as_metadata()
    assert report.energy_kwh == pytest.approx(report.cpu_energy_kwh + report.ram_energy_kwh)
    assert "gpu not attributed" in report.method


def test_blocks_open_at_once_on_two_threads_cannot_split_the_gpu(gpu_here: Devices) -> None:
    both_open = threading.Barrier(2)
    reports = []

    def step() -> None:
        with measure_energy(EnergySettings(country_iso_code="FRA")) as measurement:
            gpu_here.pids[0] = {os.getpid()}
            gpu_here.energy_mj[0] += 360_000
            both_open.wait()
        reports.append(measurement.report)

    threads = [threading.Thread(target=step) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.gpu_energy_kwh for r in reports] == [None, None]
    assert all("gpu not attributed: blocks on other threads" in r.method for r in reports)
