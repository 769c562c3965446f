"""GPU energy from NVML's device counter, charged to a step only when no other process ran on the device.

NVML's counter (``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver loaded, Volta and later) measures a
whole device. A step is charged a device's delta only when the device's compute processes, listed when the block
opens and when it closes, were this process (or its children) alone. With another process on a device the step
used, its share cannot be known: the GPU figure is left out and the method says ``gpu not attributed``. A device
the step did not appear on is charged nothing, like idle power. A process that used a device only between the two
listings is not seen; PIDs from another PID namespace (a container) never match, so they are never attributed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from green_pipeline.energy.meter import process_pids

MJ_PER_KWH = 3.6e9


@dataclass(frozen=True)
class Nvml:
    """The NVML calls the meter makes, injected so the attribution can be tested without a GPU."""

    device_count: Callable[[], int]
    device: Callable[[int], object]
    energy_mj: Callable[[object], int]
    compute_pids: Callable[[object], Iterable[int]]
    error: type[Exception]


@dataclass(frozen=True)
class Snapshot:
    """Each device's counter and compute processes, this process's PIDs, or why NVML could not be read."""

    energy_mj: tuple[int, ...] = ()
    pids: tuple[frozenset[int], ...] = ()
    own_pids: frozenset[int] = frozenset()
    error: str | None = None


@dataclass(frozen=True)
class GpuCharge:
    """A step's GPU energy (None when it cannot be attributed) and what the energy method says about it."""

    energy_kwh: float | None
    note: str


class GpuMeter:
    """Snapshots the devices when a block opens and charges their deltas when it closes."""

    def __init__(self, nvml: Nvml, own_pids: Callable[[], set[int]]) -> None:
        self._nvml = nvml
        self._own_pids = own_pids

    def snapshot(self) -> Snapshot:
        nvml = self._nvml
        try:
            devices = [nvml.device(index) for index in range(nvml.device_count())]
            return Snapshot(
                energy_mj=tuple(nvml.energy_mj(device) for device in devices),
                pids=tuple(frozenset(nvml.compute_pids(device)) for device in devices),
                own_pids=frozenset(self._own_pids()),
            )
        except nvml.error as exc:
            return Snapshot(error=f"{type(exc).__name__}: {exc}")

    def charge(self, opened: Snapshot) -> GpuCharge:
        """The deltas of the devices this process used alone between ``opened`` and now."""
        closed = self.snapshot()
        error = opened.error or closed.error
        if error is None and len(opened.pids) != len(closed.pids):
            error = f"the number of devices changed from {len(opened.pids)} to {len(closed.pids)}"
        if error is not None:
            return GpuCharge(None, f"gpu not attributed: NVML could not be read ({error})")
        ours = opened.own_pids | closed.own_pids
        used, spent_mj = [], 0
        for index, (start, end) in enumerate(zip(opened.energy_mj, closed.energy_mj, strict=True)):
            listed = opened.pids[index] | closed.pids[index]
            if not listed & ours:
                continue
            others = listed - ours
            if others:
                return GpuCharge(
                    None, f"gpu not attributed: GPU {index} also ran process(es) {sorted(others)} meanwhile"
                )
            used.append(str(index))
            spent_mj += end - start
        if not used:
            return GpuCharge(0.0, "GPU: this step ran no compute process on any device")
        return GpuCharge(
            spent_mj / MJ_PER_KWH,
            f"GPU = NVML energy counter of device(s) {', '.join(used)}, which this step's process used alone",
        )


@functools.cache
def _meter_for(pid: int) -> tuple[GpuMeter | None, str]:
    try:
        import pynvml
    except ImportError as exc:
        return None, f"NVML is unavailable: {exc}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML is unavailable: {type(exc).__name__}: {exc}"
    nvml = Nvml(
        device_count=pynvml.nvmlDeviceGetCount,
        device=pynvml.nvmlDeviceGetHandleByIndex,
        energy_mj=pynvml.nvmlDeviceGetTotalEnergyConsumption,
        compute_pids=lambda device: [process.pid for process in pynvml.nvmlDeviceGetComputeRunningProcesses(device)],
        error=pynvml.NVMLError,
    )
    return GpuMeter(nvml, process_pids), ""


def gpu_meter() -> tuple[GpuMeter | None, str]:
    """This process's meter on NVML (initialized once per process, a forked child included), or None and why not."""
    return _meter_for(os.getpid())
