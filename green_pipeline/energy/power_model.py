"""This machine's power model, from codecarbon's data: watts per busy CPU thread, watts per GB of RAM, grid intensity.

The rates make the TDP x CPU-time estimate of a step where no RAPL counter can be read (``energy.measurement``);
the grid intensity prices every figure, estimated or measured. It is the only energy module that calls codecarbon.
codecarbon's hardware detection costs about 1.5 s in every fresh process (py-cpuinfo runs a subprocess, ~1.1 s; its
reference tables load with pandas, ~0.3 s), and Dagster's multiprocess and Dask executors start a fresh process for
each step. The result depends only on the machine and the settings, so it is kept in a small JSON file in the temp
directory, keyed by host, boot time, user, codecarbon version and settings: one detection per machine boot instead
of one per step.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
from pydantic import TypeAdapter, ValidationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerModel:
    """What a CPU-second, a GB-second of memory and a kWh cost here, and where each figure comes from."""

    codecarbon_version: str
    cpu_model: str
    cpu_power_w: float
    cpu_power_source: str
    threads: int
    ram_power_w: float
    ram_gb: float
    gpu_present: bool
    carbon_intensity_g_per_kwh: float
    carbon_source: str

    @property
    def cpu_w_per_thread(self) -> float:
        return self.cpu_power_w / self.threads

    @property
    def ram_w_per_gb(self) -> float:
        return self.ram_power_w / self.ram_gb

    def estimate(self) -> str:
        """How the TDP x CPU-time estimate charges a step, at which rates and from which sources."""
        return (
            f"a TDP x CPU-time estimate at codecarbon {self.codecarbon_version}'s rates. CPU = this step's CPU "
            f"seconds (psutil: all its threads and child processes) x {self.cpu_w_per_thread:.2f} W per thread "
            f"({self.cpu_power_w:g} W {self.cpu_power_source} for {self.threads} threads, {self.cpu_model}); "
            f"RAM = its resident memory x {self.ram_w_per_gb:.3f} W/GB (codecarbon: {self.ram_power_w:g} W for "
            f"{self.ram_gb:.1f} GB)"
        )

    def carbon(self) -> str:
        return f"carbon: {self.carbon_source}, {self.carbon_intensity_g_per_kwh:.0f} g/kWh"


_PARSE = TypeAdapter(PowerModel)
_models: dict[Path, PowerModel] = {}


def power_model(country_iso_code: str | None, region: str | None, cpu_tdp_w: float | None) -> PowerModel:
    """The model for these settings: from this process's memory, else the machine's cache file, else codecarbon."""
    path = _cache_file({"country": country_iso_code, "region": region, "cpu_tdp_w": cpu_tdp_w})
    model = _models.get(path) or _read(path)
    if model is None:
        model = _detect(country_iso_code, region, cpu_tdp_w)
        _write(path, model)
    _models[path] = model
    return model


@functools.cache
def _codecarbon_version() -> str:
    return version("codecarbon")


def _cache_file(settings: dict[str, Any]) -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    key = {
        **settings,
        "codecarbon": _codecarbon_version(),
        "host": platform.node(),
        "boot": psutil.boot_time(),
        "uid": uid,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"green_pipeline-power-model-{uid}-{digest}.json"


def _read(path: Path) -> PowerModel | None:
    """The cached model, unless missing, unreadable, or planted in the shared temp directory by another user."""
    try:
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            logger.warning("ignoring the power model cache %s: it belongs to another user", path)
            return None
        return _PARSE.validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        logger.warning("ignoring the unreadable power model cache %s (%s); detecting again", path, exc)
        return None


def _write(path: Path, model: PowerModel) -> None:
    """Atomic, so a step process starting at the same moment never reads half a file; a failure only costs time."""
    try:
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(model), handle)
        os.replace(partial, path)
    except OSError as exc:
        logger.warning("could not cache the power model in %s (%s); each new process will detect it again", path, exc)


def _detect(country_iso_code: str | None, region: str | None, cpu_tdp_w: float | None) -> PowerModel:
    """codecarbon's own choices for a machine without usable RAPL counters: its cpu_load mode and RAM model."""
    from codecarbon.core import cpu, gpu
    from codecarbon.core.util import count_cpus, count_physical_cpus
    from codecarbon.external.hardware import POWER_CONSTANT
    from codecarbon.external.ram import RAM

    if cpu_tdp_w is None:
        tdp = cpu.TDP()
        cpu_model = tdp.model
        # As codecarbon's tracker does: its TDP per socket times sockets, or its generic constant when unknown.
        cpu_power_w = float(tdp.tdp * count_physical_cpus()) if tdp.tdp else float(POWER_CONSTANT)
        default = count_cpus() * cpu.DEFAULT_POWER_PER_CORE  # what codecarbon assumes for a CPU not in its table
        source = (
            "codecarbon TDP" if tdp.tdp != default else f"codecarbon's {cpu.DEFAULT_POWER_PER_CORE} W/thread default"
        )
    else:
        cpu_model, cpu_power_w, source = platform.machine(), cpu_tdp_w, "set by energy.cpu_tdp_w"
    ram = RAM(tracking_mode="machine")
    intensity, carbon_source = _carbon_intensity(country_iso_code, region)
    return PowerModel(
        codecarbon_version=_codecarbon_version(),
        cpu_model=cpu_model,
        cpu_power_w=cpu_power_w,
        cpu_power_source=source,
        threads=count_cpus(),
        ram_power_w=float(ram.total_power().W),
        ram_gb=float(ram.machine_memory_GB),
        gpu_present=bool(gpu.is_nvidia_system() or gpu.is_rocm_system()),
        carbon_intensity_g_per_kwh=intensity,
        carbon_source=carbon_source,
    )


def _carbon_intensity(country_iso_code: str | None, region: str | None) -> tuple[float, str]:
    """codecarbon's offline grid intensity (regional for USA, CAN, CHN and Nordic zones), in g CO2eq per kWh.

    Without a country, codecarbon's world average: a guess that no one would take for a cleaner grid than theirs.
    """
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    data = DataSource()
    if country_iso_code is None:
        world = float(data.get_carbon_intensity_per_source_data()["world_average"])
        return world, "codecarbon's world average (energy.country_iso_code is not set)"
    mix = data.get_global_energy_mix_data()
    geo = GeoMetadata(country_iso_code, mix.get(country_iso_code, {}).get("country_name"), region)
    kg_per_kwh = Emissions(data).get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    where = country_iso_code + (f", region {region}" if region else "")
    if country_iso_code not in mix:
        logger.warning("codecarbon has no grid data for %s: using its world average", country_iso_code)
        return kg_per_kwh * 1000, f"codecarbon's world average ({where} is not in its data)"
    return kg_per_kwh * 1000, f"codecarbon's offline grid data for {where}"
