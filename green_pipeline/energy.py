"""Energy and carbon of a block of work, measured by codecarbon's offline tracker.

This is the only module that talks to codecarbon. A failed measurement never fails the work it
measures: the report then says ``unmeasured`` and why, and carries no invented numbers.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from codecarbon import OfflineEmissionsTracker

UNMEASURED = "unmeasured"
MEASURED = "measured"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergySettings:
    """Where the machine is (for the grid's carbon intensity) and whether to measure at all."""

    country_iso_code: str = "FRA"
    region: str | None = None
    enabled: bool = True


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


@contextmanager
def measure_energy(settings: EnergySettings) -> Iterator[Measurement]:
    """Measure the energy of the ``with`` body; exceptions of the body propagate after the tracker stops."""
    measurement = Measurement()
    tracker, failure = _start_tracker(settings) if settings.enabled else (None, "energy measurement is disabled")
    started = time.perf_counter()
    try:
        yield measurement
    finally:
        duration = time.perf_counter() - started
        measurement.report = _stop_tracker(tracker, settings, duration) if tracker else _unmeasured(duration, failure)


def _start_tracker(settings: EnergySettings) -> tuple[OfflineEmissionsTracker | None, str]:
    try:
        tracker = OfflineEmissionsTracker(
            country_iso_code=settings.country_iso_code,
            region=settings.region,
            save_to_file=False,
            output_dir=tempfile.gettempdir(),
            log_level="error",
            # Dagster may run steps in parallel processes; without this, the second tracker refuses to start.
            allow_multiple_runs=True,
        )
        tracker.start()
    except Exception as exc:
        logger.warning("codecarbon could not start: %s", exc)
        return None, f"codecarbon could not start: {type(exc).__name__}: {exc}"
    return tracker, ""


def _stop_tracker(tracker: OfflineEmissionsTracker, settings: EnergySettings, duration: float) -> EnergyReport:
    try:
        emissions = tracker.stop()
        data = tracker.final_emissions_data
    except Exception as exc:
        logger.warning("codecarbon could not stop: %s", exc)
        return _unmeasured(duration, f"codecarbon could not stop: {type(exc).__name__}: {exc}")
    if emissions is None or data is None:
        return _unmeasured(duration, "codecarbon returned no data (a stale lock file or a failed measurement)")
    energy = float(data.energy_consumed)
    return EnergyReport(
        status=MEASURED,
        duration_s=duration,
        method=_method(tracker, data),
        energy_kwh=energy,
        cpu_energy_kwh=float(data.cpu_energy),
        ram_energy_kwh=float(data.ram_energy),
        gpu_energy_kwh=float(data.gpu_energy),
        emissions_kg_co2eq=float(data.emissions),
        carbon_intensity_g_per_kwh=float(data.emissions) / energy * 1000.0 if energy > 0 else None,
        country_iso_code=data.country_iso_code or settings.country_iso_code,
        region=data.region or settings.region,
    )


def _method(tracker: OfflineEmissionsTracker, data: Any) -> str:
    """Say how the figures were obtained: RAPL counters are measurements, a TDP x load model is an estimate."""
    # codecarbon exposes the CPU mode only on its private hardware objects; fall back to "unknown".
    cpu_modes = {getattr(h, "_mode", None) for h in getattr(tracker, "_hardware", []) if type(h).__name__ == "CPU"}
    cpu_mode = next(iter(cpu_modes - {None}), "unknown")
    return (
        f"codecarbon {version('codecarbon')} offline tracker, tracking_mode={data.tracking_mode}, "
        f"cpu={cpu_mode} ({data.cpu_model}, {float(data.cpu_power):.1f} W avg), ram={float(data.ram_power):.1f} W"
    )


def _unmeasured(duration: float, reason: str) -> EnergyReport:
    return EnergyReport(status=UNMEASURED, duration_s=duration, method=UNMEASURED, unmeasured_reason=reason)
