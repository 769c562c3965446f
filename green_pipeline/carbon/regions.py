"""Region advisor: cloud regions ranked by grid carbon intensity, and what measured energy would emit in each.

Intensities are the ones codecarbon ships, applied the way codecarbon applies them to a measurement: GCP
regions from its ``cloud/impact.csv`` (Google's figures); AWS and Azure regions, absent from that file,
from its grid data for the region's country or state (eGRID for US states, the Canadian provincial mix,
the Nordic bidding zones, else the country mix), located by ``profiles/cloud_regions.csv``. Reading
codecarbon's data is not measuring energy, so this module leaves measurement to ``energy.py``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files

from codecarbon.core.emissions import Emissions
from codecarbon.core.units import Energy
from codecarbon.external.geography import GeoMetadata
from codecarbon.input import DataSource

from green_pipeline.energy.measurement import EnergyStatus, MeasuredSum
from green_pipeline.errors import InvalidConfigError

PROVIDERS = ("aws", "azure", "gcp")
REGION_LOCATIONS = "profiles/cloud_regions.csv"
_NORDIC = {"SWE", "NOR", "FIN"}


@dataclass(frozen=True)
class RegionIntensity:
    provider: str
    region: str
    location: str
    country_iso_code: str
    g_co2_per_kwh: float
    source: str


@dataclass(frozen=True)
class RegionAdvice:
    """A region and what the given energy would have emitted there (None when no energy was measured)."""

    rank: int
    provider: str
    region: str
    location: str
    g_co2_per_kwh: float
    emissions_kg_co2eq: float | None
    source: str


def cloud_regions(provider: str | None = None) -> list[RegionIntensity]:
    """Regions of one provider (or all), cleanest first; ties in name order."""
    if provider is not None and provider not in PROVIDERS:
        raise InvalidConfigError(f"unknown cloud provider {provider!r}; choose one of {list(PROVIDERS)}.")
    regions = [r for r in [*_gcp_regions(), *_located_regions()] if provider in (None, r.provider)]
    return sorted(regions, key=lambda r: (r.g_co2_per_kwh, r.provider, r.region))


def region_advice(energy_kwh: float | None, provider: str | None = None, top: int | None = None) -> list[RegionAdvice]:
    """The ``top`` cleanest regions with the emissions ``energy_kwh`` would have caused in each."""
    if top is not None and top < 1:
        raise InvalidConfigError(f"--top must be at least 1, got {top}.")
    return [
        RegionAdvice(
            rank=rank,
            provider=r.provider,
            region=r.region,
            location=r.location,
            g_co2_per_kwh=r.g_co2_per_kwh,
            emissions_kg_co2eq=None if energy_kwh is None else energy_kwh * r.g_co2_per_kwh / 1000.0,
            source=r.source,
        )
        for rank, r in enumerate(cloud_regions(provider)[:top], start=1)
    ]


def measured_energy_kwh(energies: Iterable[float | None]) -> float | None:
    """The sum of the figures, measured or estimated (unmeasured steps are left out and counted by the caller), None
    if no step has one: unlike ``energy.complete_sum``, an advice on part of the ledger is still worth showing."""
    return MeasuredSum.of(energies).partial


def advice_table(advice: list[RegionAdvice]) -> str:
    """Markdown table, read both in the terminal and in the Dagster UI."""
    lines = [
        "| rank | provider | region | location | g CO2eq/kWh | g CO2eq for the measured energy | source |",
        "|---|---|---|---|---|---|---|",
    ]
    unmeasured = EnergyStatus.UNMEASURED.value
    lines += [
        f"| {a.rank} | {a.provider} | {a.region} | {a.location} | {a.g_co2_per_kwh:.0f} | "
        f"{unmeasured if a.emissions_kg_co2eq is None else f'{a.emissions_kg_co2eq * 1e3:.4g}'} | {a.source} |"
        for a in advice
    ]
    return "\n".join(lines)


def _gcp_regions() -> list[RegionIntensity]:
    impact = DataSource().get_cloud_emissions_data()
    source = f"codecarbon {version('codecarbon')} cloud/impact.csv (Google)"
    return [
        RegionIntensity(
            provider=str(row.provider),
            region=str(row.region),
            location=str(row.city) if isinstance(row.city, str) else str(row.country_name),
            country_iso_code=str(row.countryIsoCode),
            g_co2_per_kwh=float(row.impact),
            source=source,
        )
        for row in impact.itertuples(index=False)
    ]


def _located_regions() -> list[RegionIntensity]:
    text = files("green_pipeline.carbon").joinpath(REGION_LOCATIONS).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#"))))
    emissions = Emissions(DataSource())
    return [
        RegionIntensity(
            provider=row["provider"],
            region=row["region"],
            location=row["location"],
            country_iso_code=row["country_iso_code"],
            g_co2_per_kwh=_grid_intensity(emissions, row["country_iso_code"], row["state"] or None),
            source=_grid_source(row["country_iso_code"], row["state"] or None),
        )
        for row in rows
    ]


def _grid_intensity(emissions: Emissions, country: str, state: str | None) -> float:
    """codecarbon's g/kWh for a machine in ``country`` (and state or bidding zone), as its tracker computes it."""
    kg_per_kwh = emissions.get_private_infra_emissions(Energy(kWh=1.0), GeoMetadata(country, region=state))
    return kg_per_kwh * 1000.0


def _grid_source(country: str, state: str | None) -> str:
    prefix = f"codecarbon {version('codecarbon')}"
    if state is None:
        return f"{prefix} country mix ({country})"
    if country in _NORDIC:
        return f"{prefix} Nordic bidding zone {state}"
    return f"{prefix} {'eGRID 2023' if country == 'USA' else 'provincial mix 2023'} ({state})"
