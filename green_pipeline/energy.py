"""Energy and carbon of a block of work: codecarbon's power model applied to the block's own CPU time and memory.

A failed measurement never fails the work it measures: the report then says ``unmeasured`` and why, and carries
no invented numbers.

Why not a codecarbon tracker around each step, as before: a tracker measures the machine. This machine has no
RAPL counters, so codecarbon estimates the CPU at TDP x (0.1 + 0.9 x load^3) and RAM at a fixed 20 W; two steps
tracked at once in parallel processes each saw the whole machine and counted it twice (two 3-s CPU-bound steps run
at once reported 1.78x what they reported one at a time). Splitting such a machine figure by CPU share does not
add up either: the cubic curve makes one step's share depend on what runs beside it. codecarbon's
``tracking_mode="process"`` charges CPU by the process's CPU time, which is sound, but still estimates RAM at 10 W
or more per process whatever its size (three steps at once: 30 W on a 20 W machine), reads RAPL counters
machine-wide where they exist, and pays codecarbon's hardware detection (~1.5 s) in every fresh step process.

What each block is charged instead (``green_pipeline.energy_model`` takes the rates from codecarbon's data once per
machine boot; ``green_pipeline.energy_meter`` integrates the usage):
- CPU: the CPU seconds its process spent meanwhile (psutil: all threads and child processes) x codecarbon's CPU
  power / logical CPUs, which is exactly what codecarbon's process mode computes. Linear in CPU time, so steps
  running at once add up to what they would use one at a time, and never to more than the CPU's full power.
- RAM: its resident memory (GB-seconds) x codecarbon's machine RAM power / machine RAM: each step pays for the
  share of memory it occupies.
- Not attributed: idle power (the CPU floor, the RAM power of unused memory) and other processes. The idle draw is
  the machine's whether a step runs or not; charging it per step is what made concurrent steps double count.
- Blocks open at once on different threads of one process share that process's usage equally; nested blocks on
  one thread (a retrain attempt inside the retrain step) each get all of it.
- RAPL counters, where a machine has them, are not read (none here to test a split of them with): the figures stay
  the TDP x CPU-time estimate, and the method says so.
Every report's ``method`` (``energy_method`` in metadata) states the rates and sources used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from green_pipeline.energy_meter import ProcessMeter, Usage, process_meter
from green_pipeline.energy_model import PowerModel, power_model

UNMEASURED = "unmeasured"
MEASURED = "measured"
JOULES_PER_KWH = 3.6e6
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergySettings:
    """Where the machine is (for the grid's carbon intensity), the CPU's power if known, and whether to measure."""

    country_iso_code: str = "FRA"
    region: str | None = None
    enabled: bool = True
    cpu_tdp_w: float | None = None


@dataclass(frozen=True)
class EnergyReport:
    """Figures for one measured block; the numeric fields are None when ``status`` is ``unmeasured``."""

    status: str
    duration_s: float
    method: str
    energy_kwh: float | None = None
    cpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    emissions_kg_co2eq: float | None = None
    carbon_intensity_g_per_kwh: float | None = None
    country_iso_code: str | None = None
    region: str | None = None
    unmeasured_reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.status == MEASURED

    def as_metadata(self) -> dict[str, float | str]:
        """Flat snake_case fields with units; absent figures are left out rather than zeroed."""
        values: dict[str, Any] = {
            "energy_status": self.status,
            "energy_method": self.method,
            "duration_s": self.duration_s,
            "energy_kwh": self.energy_kwh,
            "cpu_energy_kwh": self.cpu_energy_kwh,
            "ram_energy_kwh": self.ram_energy_kwh,
            "gpu_energy_kwh": self.gpu_energy_kwh,
            "emissions_kg_co2eq": self.emissions_kg_co2eq,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "country_iso_code": self.country_iso_code,
            "region": self.region,
            "energy_unmeasured_reason": self.unmeasured_reason,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class Measurement:
    """Filled in when the ``measure_energy`` block exits."""

    report: EnergyReport | None = field(default=None)


@dataclass(frozen=True)
class _Open:
    model: PowerModel
    meter: ProcessMeter
    usage: Usage


@contextmanager
def measure_energy(settings: EnergySettings) -> Iterator[Measurement]:
    """Measure the energy of the ``with`` body; exceptions of the body propagate after the measurement ends."""
    measurement = Measurement()
    opened, failure = _open(settings) if settings.enabled else (None, "energy measurement is disabled")
    started = time.perf_counter()
    try:
        yield measurement
    finally:
        duration = time.perf_counter() - started
        measurement.report = _close(opened, settings, duration) if opened else _unmeasured(duration, failure)


def _open(settings: EnergySettings) -> tuple[_Open | None, str]:
    try:
        model = power_model(settings.country_iso_code, settings.region, settings.cpu_tdp_w)
    except Exception as exc:  # codecarbon's detection may fail in any way; the work must go on regardless
        logger.warning("codecarbon's power model is unavailable: %s", exc)
        return None, f"codecarbon's power model is unavailable: {type(exc).__name__}: {exc}"
    try:
        meter = process_meter()
        return _Open(model, meter, meter.open()), ""
    except (psutil.Error, OSError) as exc:
        logger.warning("psutil could not read this process: %s", exc)
        return None, f"psutil could not read this process's CPU time and memory: {type(exc).__name__}: {exc}"


def _close(opened: _Open, settings: EnergySettings, duration: float) -> EnergyReport:
    usage, model = opened.meter.close(opened.usage), opened.model
    if usage.error:
        return _unmeasured(duration, usage.error)
    cpu_kwh = usage.cpu_s * model.cpu_w_per_thread / JOULES_PER_KWH
    ram_kwh = usage.gb_s * model.ram_w_per_gb / JOULES_PER_KWH
    energy = cpu_kwh + ram_kwh
    method = model.describe()
    if usage.peers > 1:
        method += (
            f" This block shared its process with {usage.peers - 1} block(s) open on other threads: "
            "the process's CPU time and memory were split equally between them."
        )
    return EnergyReport(
        status=MEASURED,
        duration_s=duration,
        method=method,
        energy_kwh=energy,
        cpu_energy_kwh=cpu_kwh,
        ram_energy_kwh=ram_kwh,
        gpu_energy_kwh=None if model.gpu_present else 0.0,
        emissions_kg_co2eq=energy * model.carbon_intensity_g_per_kwh / 1000.0,
        carbon_intensity_g_per_kwh=model.carbon_intensity_g_per_kwh,
        country_iso_code=settings.country_iso_code,
        region=settings.region,
    )


def _unmeasured(duration: float, reason: str) -> EnergyReport:
    return EnergyReport(status=UNMEASURED, duration_s=duration, method=UNMEASURED, unmeasured_reason=reason)
