"""Energy and carbon of a block of work: RAPL counters where they can be read, else an estimate from its CPU time.

Every report says which (``energy_status``): ``measured`` when its CPU figure comes from the machine's RAPL
counters, ``estimated`` for the TDP x CPU-time model, ``unmeasured`` when neither worked. Estimated and measured
figures count alike wherever energy is summed (ledger, budgets, KPIs, MLflow): ``EnergyStatus.has_figures``. A failed
measurement never fails the work it measures: the report then says ``unmeasured`` and why, with no invented numbers.

Why not a codecarbon tracker around each step: a tracker measures the machine, so two steps tracked at once in
parallel processes each saw all of it and counted it twice (two 3-s CPU-bound steps run at once reported 1.78x what
they reported one at a time). codecarbon's ``tracking_mode="process"`` charges CPU by the process's CPU time, but
still estimates RAM at 10 W or more per process whatever its size, reads RAPL counters machine-wide, and pays its
hardware detection (~1.5 s) in every fresh step process.

What each block is charged instead (``green_pipeline.energy.meter`` integrates the usage):
- CPU where RAPL counters are readable (``energy.rapl``): each interval's package energy x the block's CPU
  seconds / the machine's busy CPU seconds in it (``/proc/stat``); DRAM the same way, where that domain exists.
  Status ``measured``.
- CPU elsewhere: its CPU seconds (psutil: all threads and child processes) x codecarbon's CPU power / logical CPUs,
  which is what codecarbon's process mode computes; RAM: its resident memory (GB-seconds) x codecarbon's machine
  RAM power / machine RAM (``green_pipeline.energy.power_model``, detected once per boot). Status ``estimated``.
- GPU (``green_pipeline.energy.gpu``): the NVML counter's delta of the devices the block's process used alone;
  with another process on such a device the GPU is left out and the method says ``gpu not attributed``.
- Not attributed: other processes, and whatever the machine draws while no CPU is busy (or, estimated, the CPU
  floor and the RAM power of unused memory). Linear shares: steps running at once add up to one at a time.
- Blocks open at once on different threads of one process share that process's usage equally; nested blocks on
  one thread (a retrain attempt inside the retrain step) each get all of it.
- CO2: codecarbon's offline grid intensity of ``country_iso_code``; with none set, its world average, with a
  warning once per process.
Every report's ``method`` (``energy_method`` in metadata) states the status, rates and sources used.

Energy spent in other processes on a block's behalf (Dask workers: ``distributed.metering``) is added to it with
``charge_elsewhere``: the block's report is then its own process's share plus those parts, unmeasured if any part is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psutil

from green_pipeline.energy.gpu import GpuCharge, GpuMeter, Snapshot, gpu_meter
from green_pipeline.energy.meter import ProcessMeter, Usage, process_meter
from green_pipeline.energy.power_model import PowerModel, power_model
from green_pipeline.errors import InvalidConfigError

JOULES_PER_KWH = 3.6e6
#: Significant digits of ``energy_mwh``, the figure people read (and the UI plots) next to the exact ``energy_kwh``.
READABLE_DIGITS = 3
#: Metadata keys of the figures read back from the event log (orchestration.metadata.StepEnergy); written only by
#: ``EnergyReport.as_metadata``.
ENERGY_STATUS_KEY = "energy_status"
ENERGY_KWH_KEY = "energy_kwh"
EMISSIONS_KEY = "emissions_kg_co2eq"
DURATION_KEY = "duration_s"
logger = logging.getLogger(__name__)


class EnergyStatus(StrEnum):
    """Where a block's figures come from: counters the machine keeps, a power model, or nowhere."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    UNMEASURED = "unmeasured"

    @property
    def has_figures(self) -> bool:
        """Estimated figures count wherever measured ones do; only unmeasured blocks are left out."""
        return self is not EnergyStatus.UNMEASURED

    @classmethod
    def of_total(cls, parts: Iterable[str]) -> EnergyStatus:
        """The status of a sum: unmeasured if any part (or no part) is, else estimated if any part is."""
        found = {cls(part) for part in parts}
        if not found or cls.UNMEASURED in found:
            return cls.UNMEASURED
        return cls.ESTIMATED if cls.ESTIMATED in found else cls.MEASURED


@dataclass(frozen=True)
class MeasuredSum:
    """Figures (measured or estimated) added up, and the parts without one (None: unmeasured) counted, never guessed.

    The one home of the unmeasured rule: ledgers and budgets show ``total`` with ``unmeasured`` beside it; a KPI
    that a partial total would understate takes ``complete``.
    """

    total: float
    unmeasured: int
    parts: int

    @classmethod
    def of(cls, parts: Iterable[float | None]) -> MeasuredSum:
        values = list(parts)
        figures = [value for value in values if value is not None]
        return cls(total=float(sum(figures)), unmeasured=len(values) - len(figures), parts=len(values))

    @property
    def complete(self) -> float | None:
        """The sum, or None when any part has no figure or there is no part: a partial total would understate."""
        return self.total if self.parts and not self.unmeasured else None

    @property
    def partial(self) -> float | None:
        """The sum of the figures there are, or None when no part has one."""
        return self.total if self.unmeasured < self.parts else None


def complete_sum(parts: Iterable[float | None]) -> float | None:
    """``MeasuredSum.complete`` of ``parts``."""
    return MeasuredSum.of(parts).complete


@dataclass(frozen=True)
class EnergySettings:
    """Where the machine is (for the grid's carbon intensity), the CPU's power if known, and whether to measure."""

    country_iso_code: str | None = None
    region: str | None = None
    enabled: bool = True
    cpu_tdp_w: float | None = None

    def __post_init__(self) -> None:
        if self.region is not None and self.country_iso_code is None:
            raise InvalidConfigError(
                f"energy.region is {self.region!r} but energy.country_iso_code is not set: set the country too."
            )


@dataclass(frozen=True)
class EnergyReport:
    """Figures for one block; the numeric fields are None when ``status`` is ``unmeasured``."""

    status: EnergyStatus
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
    def has_figures(self) -> bool:
        return self.status.has_figures

    def as_metadata(self) -> dict[str, float | str]:
        """Flat snake_case fields with units; absent figures are left out rather than zeroed."""
        values: dict[str, Any] = {
            ENERGY_STATUS_KEY: self.status.value,
            "energy_method": self.method,
            DURATION_KEY: self.duration_s,
            ENERGY_KWH_KEY: self.energy_kwh,
            "energy_mwh": None if self.energy_kwh is None else float(f"{self.energy_kwh * 1e6:.{READABLE_DIGITS}g}"),
            "cpu_energy_kwh": self.cpu_energy_kwh,
            "ram_energy_kwh": self.ram_energy_kwh,
            "gpu_energy_kwh": self.gpu_energy_kwh,
            EMISSIONS_KEY: self.emissions_kg_co2eq,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "country_iso_code": self.country_iso_code,
            "region": self.region,
            "energy_unmeasured_reason": self.unmeasured_reason,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class Measurement:
    """Filled in when the ``measure_energy`` block exits.

    ``report`` is the block's figure: ``local`` (this process's share) plus what was charged to it elsewhere.
    """

    report: EnergyReport | None = field(default=None)
    local: EnergyReport | None = field(default=None)


@dataclass(frozen=True)
class _Open:
    model: PowerModel
    meter: ProcessMeter
    usage: Usage
    gpu: tuple[GpuMeter, Snapshot] | GpuCharge
    #: Who the block shared its process with when others were open at once (the method says so).
    sharers: str = "open on other threads"


@dataclass(frozen=True)
class OpenBlock:
    """A block opened by ``open_block`` and not yet closed: the worker side of a step metering a Dask cluster,
    opened and closed by two calls rather than around a ``with`` body."""

    settings: EnergySettings
    opened: _Open | None
    failure: str
    started: float


@dataclass
class _Charges:
    """An open ``measure_energy`` block, to which ``charge_elsewhere`` adds the parts spent in other processes."""

    outer: _Charges | None
    parts: list[tuple[EnergyReport, str]] = field(default_factory=list)
    closed: bool = False


#: The innermost ``measure_energy`` block open in this context (thread or task).
_innermost: ContextVar[_Charges | None] = ContextVar("green_pipeline_energy_block", default=None)


@contextmanager
def measure_energy(settings: EnergySettings) -> Iterator[Measurement]:
    """Measure the energy of the ``with`` body; exceptions of the body propagate after the measurement ends."""
    measurement = Measurement()
    block = open_block(settings)
    charges = _Charges(outer=_innermost.get())
    context = _innermost.set(charges)
    try:
        yield measurement
    finally:
        measurement.local = close_block(block)
        charges.closed = True
        with contextlib.suppress(ValueError):  # exited in another context than entered: charges.closed tells
            _innermost.reset(context)
        measurement.report = _with_parts(measurement.local, charges.parts) if charges.parts else measurement.local


def open_block(settings: EnergySettings, share_key: int | None = None) -> OpenBlock:
    """Start metering this process for a block closed by ``close_block``; ``share_key`` as ``ProcessMeter.open``.

    Unlike ``measure_energy`` it is not a block ``charge_elsewhere`` can charge: it meters this process only.
    """
    opened, failure = _open(settings, share_key) if settings.enabled else (None, "energy measurement is disabled")
    return OpenBlock(settings, opened, failure, time.perf_counter())


def close_block(block: OpenBlock) -> EnergyReport:
    """The report of a block ``open_block`` opened; never raises (a failed reading makes it ``unmeasured``)."""
    duration = time.perf_counter() - block.started
    if block.opened is None:
        return _unmeasured(duration, block.failure)
    return _close(block.opened, block.settings, duration)


def charge_elsewhere(report: EnergyReport, where: str) -> None:
    """Add energy spent in other processes on this work's behalf (``where``: e.g. "2 Dask worker(s) on host(s) a")
    to the innermost ``measure_energy`` block open in this context, and to each block around it, as nested blocks
    each get all of this process's usage. With no block open (or on another thread) it is charged to nothing."""
    charges = _innermost.get()
    while charges is not None and charges.closed:
        charges = charges.outer
    if charges is None:
        logger.info("No measure_energy block is open here: the energy of %s is charged to no block.", where)
    while charges is not None:
        if not charges.closed:
            charges.parts.append((report, where))
        charges = charges.outer


def _with_parts(local: EnergyReport, parts: Sequence[tuple[EnergyReport, str]]) -> EnergyReport:
    """This process's share plus the parts charged elsewhere: figures only when every part has them, never a guess."""
    reports = [local, *(report for report, _ in parts)]
    status = EnergyStatus.of_total(report.status for report in reports)
    if not status.has_figures:
        reasons = [] if local.has_figures else [f"this process: {local.unmeasured_reason}"]
        reasons += [f"{where}: {report.unmeasured_reason}" for report, where in parts if not report.has_figures]
        return _unmeasured(local.duration_s, "; ".join(reasons))
    energy = complete_sum(report.energy_kwh for report in reports)
    intensity = local.carbon_intensity_g_per_kwh
    elsewhere = " ".join(f"Plus {where}: {report.method}" for report, where in parts)
    return EnergyReport(
        status=status,
        duration_s=local.duration_s,
        method=f"{status.value}: the sum of this process's share and {len(parts)} part(s) charged elsewhere. "
        f"This process: {local.method} {elsewhere}",
        energy_kwh=energy,
        cpu_energy_kwh=complete_sum(report.cpu_energy_kwh for report in reports),
        ram_energy_kwh=complete_sum(report.ram_energy_kwh for report in reports),
        gpu_energy_kwh=complete_sum(report.gpu_energy_kwh for report in reports),
        emissions_kg_co2eq=None if energy is None or intensity is None else energy * intensity / 1000.0,
        carbon_intensity_g_per_kwh=intensity,
        country_iso_code=local.country_iso_code,
        region=local.region,
    )


def _open(settings: EnergySettings, share_key: int | None = None) -> tuple[_Open | None, str]:
    try:
        model = power_model(settings.country_iso_code, settings.region, settings.cpu_tdp_w)
    except Exception as exc:  # codecarbon's detection may fail in any way; the work must go on regardless
        logger.warning("codecarbon's power model is unavailable: %s", exc)
        return None, f"codecarbon's power model is unavailable: {type(exc).__name__}: {exc}"
    if settings.country_iso_code is None:
        _warn_world_average()
    gpu = _open_gpu(model)
    try:
        meter = process_meter()
        if share_key is None:
            return _Open(model, meter, meter.open(), gpu), ""
        sharers = "open at once on this Dask worker (other steps metering it, or threads)"
        return _Open(model, meter, meter.open(share_key), gpu, sharers), ""
    except (psutil.Error, OSError) as exc:
        logger.warning("psutil could not read this process: %s", exc)
        return None, f"psutil could not read this process's CPU time and memory: {type(exc).__name__}: {exc}"


@functools.cache
def _warn_world_average() -> None:
    """Once per process: each step's ``energy_method`` says it too, and a warning per step would drown the log."""
    logger.warning(
        "energy.country_iso_code is not set: CO2 figures use codecarbon's world average grid intensity. Set it "
        "(ISO 3166 alpha-3, e.g. FRA, USA) to where this machine runs."
    )


def _open_gpu(model: PowerModel) -> tuple[GpuMeter, Snapshot] | GpuCharge:
    """The devices' snapshot to charge from at the end, or the block's GPU figure already known."""
    if not model.gpu_present:
        return GpuCharge(0.0, "GPU: none")
    meter, unavailable = gpu_meter()
    if meter is None:
        return GpuCharge(None, f"gpu not attributed: {unavailable}")
    return meter, meter.snapshot()


def _close(opened: _Open, settings: EnergySettings, duration: float) -> EnergyReport:
    usage, model = opened.meter.close(opened.usage), opened.model
    if usage.error:
        return _unmeasured(duration, usage.error)
    status, cpu_kwh, ram_kwh, how = _cpu_and_ram(opened.meter, usage, model)
    gpu = _gpu_charge(opened.gpu, usage)
    energy = cpu_kwh + (ram_kwh or 0.0) + (gpu.energy_kwh or 0.0)
    method = f"{status.value}: {how}; {gpu.note}; {model.carbon()}. Not attributed: {_NOT_ATTRIBUTED[status]}."
    if usage.peers > 1:
        method += (
            f" This block shared its process with {usage.peers - 1} block(s) {opened.sharers}: "
            "the process's CPU time and memory were split equally between them."
        )
    return EnergyReport(
        status=status,
        duration_s=duration,
        method=method,
        energy_kwh=energy,
        cpu_energy_kwh=cpu_kwh,
        ram_energy_kwh=ram_kwh,
        gpu_energy_kwh=gpu.energy_kwh,
        emissions_kg_co2eq=energy * model.carbon_intensity_g_per_kwh / 1000.0,
        carbon_intensity_g_per_kwh=model.carbon_intensity_g_per_kwh,
        country_iso_code=settings.country_iso_code,
        region=settings.region,
    )


_NOT_ATTRIBUTED = {
    EnergyStatus.MEASURED: "other processes' share, and what the counters count while no CPU is busy",
    EnergyStatus.ESTIMATED: "idle power (CPU floor, RAM of unused memory) and other processes",
}


def _cpu_and_ram(meter: ProcessMeter, usage: Usage, model: PowerModel) -> tuple[EnergyStatus, float, float | None, str]:
    """The CPU and RAM figures: the block's share of the RAPL counters, else the estimate, and how they were made."""
    rapl = meter.rapl
    if rapl is not None and usage.rapl_error is None:
        ram_kwh = usage.dram_j / JOULES_PER_KWH if rapl.has_dram else None
        ram = "RAM = the DRAM energy x the same share" if rapl.has_dram else "RAM: no DRAM domain here, not counted"
        how = (
            f"{rapl.describe()}. CPU = the package energy of each interval x this step's CPU seconds (psutil: all "
            f"its threads and child processes) / the machine's busy CPU seconds ({rapl.proc_stat}); {ram}"
        )
        return EnergyStatus.MEASURED, usage.package_j / JOULES_PER_KWH, ram_kwh, how
    cpu_kwh = usage.cpu_s * model.cpu_w_per_thread / JOULES_PER_KWH
    ram_kwh = usage.gb_s * model.ram_w_per_gb / JOULES_PER_KWH
    return EnergyStatus.ESTIMATED, cpu_kwh, ram_kwh, f"{usage.rapl_error or meter.rapl_absent}, so {model.estimate()}"


def _gpu_charge(gpu: tuple[GpuMeter, Snapshot] | GpuCharge, usage: Usage) -> GpuCharge:
    if isinstance(gpu, GpuCharge):
        return gpu
    meter, opened = gpu
    charge = meter.charge(opened)
    if charge.energy_kwh and usage.peers > 1:
        return GpuCharge(None, "gpu not attributed: blocks on other threads of this process were open meanwhile")
    return charge


def _unmeasured(duration: float, reason: str) -> EnergyReport:
    status = EnergyStatus.UNMEASURED
    return EnergyReport(status=status, duration_s=duration, method=status.value, unmeasured_reason=reason)
